import { z } from 'zod';

export const Id = z.uuid();
export const IsoDateTime = z.iso.datetime({ offset: true });
export const IsoDate = z.iso.date();
export const ShortText = z.string().trim().min(1).max(200);
export const LongText = z.string().max(10_000);
export const Tag = z.string().trim().min(1).max(50).regex(/^[\p{L}\p{N}_:.\- ]+$/u, 'letters, digits, space, _ : . -');

/** What a personal field reads as once its customer has been forgotten (crypto-shredded). */
export const ERASED = '[erased]';
