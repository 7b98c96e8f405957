/**
 * A customer's tags are a set in which case does not count: `VIP` and `vip` are one tag, kept as first
 * written. Two spellings of one tag were two tags, and `?tag=vip` missed the customers tagged `VIP`.
 * The decider's fold and the customers read model both keep tags through these.
 */

/** What a tag is compared and looked up by. */
export const tagKey = (tag: string): string => tag.toLowerCase();

/** The spelling `tags` holds of `tag`, if it holds it in any case. */
export const storedTag = (tags: readonly string[], tag: string): string | undefined => {
  const key = tagKey(tag);
  return tags.find((t) => tagKey(t) === key);
};

export const withTag = (tags: readonly string[], tag: string): string[] => (storedTag(tags, tag) === undefined ? [...tags, tag] : [...tags]);

export const withoutTag = (tags: readonly string[], tag: string): string[] => {
  const key = tagKey(tag);
  return tags.filter((t) => tagKey(t) !== key);
};

/** Tags as a set: each tag once, in any case, as first written. */
export const tagSet = (tags: readonly string[]): string[] => tags.reduce<string[]>(withTag, []);
