/**
 * File-system steps every writer in the data dir shares (the identity key, the profile,
 * the database, the locks). A leaf: it imports nothing of p2pchat, so the profile, read at
 * every start, loads no storage code with it.
 */
import * as fs from "node:fs"

/** Opens without following a symbolic link where the platform can (0 elsewhere). */
export const O_NOFOLLOW: number = fs.constants.O_NOFOLLOW ?? 0

/** Makes a rename or link in `dir` durable: fsync of the directory itself. */
export const fsyncDir = (dir: string): void => {
  if (process.platform === "win32") return // a directory cannot be opened there; NTFS journals the rename
  const fd = fs.openSync(dir, "r")
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}
