/** Small wording helpers shared by kip's messages. */

/** `1 chain`, `2 chains`; `many` for a word whose plural is not `word + "s"`. */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}
