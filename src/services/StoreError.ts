/**
 * The Store's error, and the helpers its modules (Store.ts, StoreOpen.ts, StoreChecks.ts,
 * StoreRead.ts, StoreSchema.ts, Durability.ts) share to put a thrown value into words.
 */
import * as Data from "effect/Data"

export class StoreError extends Data.TaggedError("StoreError")<{ readonly message: string }> {}

/** The way out every refusal to open offers. */
export const CHOOSE_ANOTHER = "choose another --data-dir"

/** The `code` of a SqliteError (SQLITE_…) or a Node system error (ENOTDIR…). */
export const errorCode = (e: unknown): string =>
  typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : ""

export const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** A file system error in words, for paths the user chose. */
export const fsReason = (e: unknown): string => {
  const code = errorCode(e)
  switch (code) {
    case "ENOTDIR":
      return "ENOTDIR: a part of the path is a file, not a directory"
    case "EEXIST":
      return "EEXIST: it exists and is not a directory"
    case "EACCES":
    case "EPERM":
      return `${code}: permission denied`
    case "EROFS":
      return "EROFS: read-only file system"
    case "ENOSPC":
      return "ENOSPC: no space left on device"
    default:
      return code || errorMessage(e)
  }
}
