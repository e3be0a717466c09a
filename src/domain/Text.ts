/**
 * Text that leaves the program for a terminal or a log: what a peer chose must never
 * reach a terminal raw. One place for the rule, used by the UI's printers, the JSON
 * renderer, log lines and the refusal reasons built from peer input.
 */

/**
 * What must never reach a terminal raw: C0 controls, DEL, C1 controls, the bidi controls
 * (U+061C, U+200E/F, U+202A-U+202E, U+2066-U+2069) and the line and paragraph separators.
 */
// eslint-disable-next-line no-control-regex
export const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

/** `\u202e` for U+202E: visible, and a valid escape inside a JSON string as well. */
export const escapeChar = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`

/**
 * The one sanitiser of text bound for a terminal, applied by every printer (the console's
 * and the CLI's): a tab shows as a space, every other UNSAFE character as its `\uXXXX`
 * escape, so nothing a peer chose (a name, a text, an error quoting either) can move the
 * cursor, clear the screen, reverse the line or start a new one. Idempotent.
 */
export const clean = (s: string): string => s.replace(/\t/g, " ").replace(UNSAFE, escapeChar)

