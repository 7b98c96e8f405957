import { decodeRecordedEvent, type PersonalData } from '../eventstore/personal-data.ts';
import type { EventCodec } from './apply-batch.ts';

/** The codec every runner uses: decrypt with the customer's key (or '[erased]'), upcast, validate. */
export const personalDataCodec = (personalData: PersonalData): EventCodec => ({
  decode: (recorded) => decodeRecordedEvent(recorded, personalData),
  evict: (customerId) => personalData.evict(customerId),
});
