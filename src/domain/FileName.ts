/**
 * Names from the network made safe to create on disk (protocol.md 9.5). A name a peer
 * offers never becomes a path: no separators (`/`, `\`), no `.` or `..`, no drive or
 * absolute path, no control or bidirectional-override characters, no characters Windows
 * refuses, no Windows device name (`con`, `nul`, `com1`, `lpt1`, with any extension, in
 * any case), no trailing dots or spaces, at most 255 UTF-8 bytes (shortened, keeping the
 * extension); an empty one is `file`. And a name already taken is never reused:
 * `name (1).ext`, `name (2).ext`. Pure code.
 */

/** Longest name in UTF-8 bytes (what ext4, NTFS and APFS allow). */
export const MAX_NAME_BYTES = 255

// C0 and C1 controls, DEL; the bidirectional marks and overrides that can make `exe.pdf`
// show as `fdp.exe`; the characters Windows refuses in a name (`:` also stops `C:\x`).
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069/\\<>:"|?*]/gu
const DEVICE = /^(con|prn|aux|nul|com[0-9\u00b9\u00b2\u00b3]|lpt[0-9\u00b9\u00b2\u00b3]|conin\$|conout\$)$/i

const utf8Bytes = (s: string): number => Buffer.byteLength(s, "utf8")

/** `report.pdf` -> [`report`, `.pdf`]; no extension when the dot is first or the tail is long. */
export const splitExtension = (name: string): readonly [string, string] => {
  const dot = name.lastIndexOf(".")
  if (dot <= 0 || dot === name.length - 1 || utf8Bytes(name.slice(dot)) > 32) return [name, ""]
  return [name.slice(0, dot), name.slice(dot)]
}

/** The longest prefix of `s` (whole code points) of at most `max` UTF-8 bytes. */
const cutToBytes = (s: string, max: number): string => {
  let out = ""
  let used = 0
  for (const ch of s) {
    const n = utf8Bytes(ch)
    if (used + n > max) break
    out += ch
    used += n
  }
  return out
}

/** `stem` + `tail` in at most `max` bytes: the stem is shortened, the tail kept. */
const fit = (stem: string, tail: string, max: number): string => {
  const room = max - utf8Bytes(tail)
  if (room <= 0) return cutToBytes(stem + tail, max)
  return cutToBytes(stem, room) + tail
}

const trimEnds = (s: string): string => s.replace(/^[\s]+/u, "").replace(/[.\s]+$/u, "")

/** A name from the network as it may be created in a folder (see the top of this file). */
export const safeName = (name: string): string => {
  let s = trimEnds(name.normalize("NFC").replace(UNSAFE, "_"))
  if (s === "" || /^\.+$/.test(s)) return "file"
  // a device name is one whatever its extension: `con.txt`, `NUL .tar.gz`
  const base = s.split(".")[0]!.trimEnd()
  if (DEVICE.test(base)) s = `_${s}`
  if (utf8Bytes(s) > MAX_NAME_BYTES) {
    const [stem, ext] = splitExtension(s)
    s = trimEnds(fit(stem, ext, MAX_NAME_BYTES))
    if (s === "") s = "file"
  }
  return s
}

/**
 * A relative path from the network (parts separated by `/`) as safe parts: each part made
 * safe, the empty ones, `.` and `..` dropped (they never climb out); none left: `file`.
 */
export const safeParts = (relative: string): Array<string> => {
  const parts = relative.split("/").filter((p) => p !== "" && p !== "." && p !== "..").map(safeName)
  return parts.length === 0 ? ["file"] : parts
}

/** `name (n).ext`, shortened to MAX_NAME_BYTES if it must be (the number and extension kept). */
export const numberedName = (name: string, n: number): string => {
  if (n === 0) return name
  const [stem, ext] = splitExtension(name)
  return fit(stem, ` (${n})${ext}`, MAX_NAME_BYTES)
}

/** `name` with `suffix` (`.part`) kept within MAX_NAME_BYTES. */
export const withSuffix = (name: string, suffix: string): string => fit(name, suffix, MAX_NAME_BYTES)

/** How many numbered names are tried before giving up. */
export const MAX_NUMBERED = 10_000

/**
 * The first of `name`, `name (1).ext`, `name (2).ext`... that `taken` says is free, or
 * undefined after MAX_NUMBERED tries.
 */
export const freeName = (name: string, taken: (candidate: string) => boolean): string | undefined => {
  for (let n = 0; n <= MAX_NUMBERED; n++) {
    const candidate = numberedName(name, n)
    if (!taken(candidate)) return candidate
  }
  return undefined
}

/** A size for people: `2.1 MB`, `512 B` (decimal units). */
export const sizeText = (bytes: number): string => {
  if (bytes < 1000) return `${bytes} B`
  const units = ["kB", "MB", "GB", "TB", "PB"]
  let value = bytes / 1000
  let u = 0
  while (value >= 1000 && u < units.length - 1) {
    value /= 1000
    u++
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[u]}`
}
