import { decodeRecordedEvent, encryptedSubjectOf, type PersonalData } from '../eventstore/personal-data.ts';
import type { EventCodec } from './apply-batch.ts';
import { isTransient } from './errors.ts';

/** The codec every runner uses: decrypt with the customer's key (or '[erased]'), upcast, validate. */
export const personalDataCodec = (personalData: PersonalData): EventCodec => ({
  decode: (recorded) => decodeRecordedEvent(recorded, personalData),
  evict: (customerId) => personalData.evict(customerId),
  // One query for the keys of every customer of a run of events that are not cached yet, instead of a
  // round trip per customer while decoding (a catch-up after an import of 23,570 customers made 23,570
  // of them, queued behind the batch transactions on the pool). A key that does not unwrap is left to
  // the event's own decode, which records it against that event (a poison event, not a failed batch).
  preload: async (events) => {
    const ids = new Set<string>();
    for (const e of events) {
      const id = encryptedSubjectOf(e.type, e.data);
      if (id !== undefined) ids.add(id);
    }
    if (ids.size === 0) return;
    try {
      await personalData.loadKeys([...ids]);
    } catch (error) {
      if (isTransient(error)) throw error;
    }
  },
});
