/**
 * What the terminal sends, before the line editor sees it: Ctrl-C and Ctrl-D, which the
 * console handles itself (the editor would end the input for good), and bracketed pastes
 * (`ESC [200~ ... ESC [201~`, enabled with `ESC [?2004h`), which are text for the current
 * conversation, never keystrokes: a newline in a paste must not submit a line. Everything
 * else goes to the line editor as it came.
 *
 * Pure and incremental: a marker may be split between two reads.
 */

export const PASTE_ON = "\x1b[?2004h"
export const PASTE_OFF = "\x1b[?2004l"
const PASTE_START = "\x1b[200~"
const PASTE_END = "\x1b[201~"

export type Key =
  | { readonly _tag: "text"; readonly text: string }
  | { readonly _tag: "ctrl-c" }
  | { readonly _tag: "ctrl-d" }
  | { readonly _tag: "paste"; readonly text: string }

/** How much of `s`'s end is a beginning of `marker` (kept for the next read). */
const partialTail = (s: string, marker: string): number => {
  for (let n = Math.min(marker.length - 1, s.length); n > 0; n--) {
    if (marker.startsWith(s.slice(s.length - n))) return n
  }
  return 0
}

/** Splits typed text at Ctrl-C and Ctrl-D. */
const typed = (s: string, out: Array<Key>): void => {
  let from = 0
  for (let i = 0; i < s.length; i++) {
    const c = s[i]
    if (c !== "\x03" && c !== "\x04") continue
    if (i > from) out.push({ _tag: "text", text: s.slice(from, i) })
    out.push({ _tag: c === "\x03" ? "ctrl-c" : "ctrl-d" })
    from = i + 1
  }
  if (from < s.length) out.push({ _tag: "text", text: s.slice(from) })
}

/** A reader of the terminal's input: each call takes one read and gives the keys it completes. */
export const makeKeyReader = (): (chunk: string) => ReadonlyArray<Key> => {
  let held = "" // the start of a marker, split by the read
  let paste: string | undefined // inside a paste: what came so far
  return (chunk) => {
    const out: Array<Key> = []
    let s = held + chunk
    held = ""
    while (s.length > 0) {
      if (paste !== undefined) {
        const end = s.indexOf(PASTE_END)
        if (end < 0) {
          const keep = partialTail(s, PASTE_END)
          paste += s.slice(0, s.length - keep)
          held = s.slice(s.length - keep)
          break
        }
        out.push({ _tag: "paste", text: paste + s.slice(0, end) })
        paste = undefined
        s = s.slice(end + PASTE_END.length)
        continue
      }
      const start = s.indexOf(PASTE_START)
      if (start < 0) {
        const keep = partialTail(s, PASTE_START)
        typed(s.slice(0, s.length - keep), out)
        held = s.slice(s.length - keep)
        break
      }
      typed(s.slice(0, start), out)
      paste = ""
      s = s.slice(start + PASTE_START.length)
    }
    return out
  }
}

/** A paste's text with its line breaks as `\n` (terminals send `\r`), without trailing ones. */
export const pastedText = (text: string): string => text.replace(/\r\n?/g, "\n").replace(/\n+$/, "")
