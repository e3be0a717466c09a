/**
 * `Store.durable`'s machinery: group commit of WAL fsyncs, off the event loop (node:fs
 * calls run in libuv's thread pool). Store.ts says what `durable` promises; this module is
 * how. A GroupSync is the state of one Store's connection; the functions below act on it.
 *
 * Group commit. A round is one sync of the WAL (normally one fsync). At most one round runs
 * at a time. A caller arriving when none runs starts one at once. A caller arriving while
 * one runs joins it when no commit has been made since it started (it already covers the
 * caller's commits: they were made before the caller arrived); otherwise it waits for the
 * next round, which starts when the running one ends and covers every caller that queued
 * for it. A caller arriving when nothing was committed since the last successful round
 * returns at once. "Commits made since" is read from SQLite's total_changes(), which every
 * INSERT, UPDATE and DELETE of this connection increases (the History and the peer
 * snapshot write nothing else; the DDL of the migrations precedes the first round, which
 * always syncs). A call inside an open transaction never counts as covered.
 *
 * What a round syncs, and why it is enough:
 * - The WAL file (`<db>-wal`), through a descriptor kept open between rounds. SQLite
 *   deletes the WAL only when the last connection closes, and this Store's connection is
 *   open as long as the descriptor is; a checkpoint restarts the WAL in the same file. So
 *   the descriptor stays right, and a round is one sync, with no stat on the hot path.
 *   Frames already checkpointed and overwritten are durable in the db
 *   file: with NORMAL, SQLite fsyncs the WAL before a checkpoint and the db file after it,
 *   and restarts the WAL only after a complete checkpoint (https://sqlite.org/pragma.html
 *   #pragma_synchronous). So an fsync of the file the path names after a commit reaches
 *   that commit's frames, or they are durable in the db file already.
 * - When the WAL file is one this Store has not synced before (the first round, or a new
 *   inode), also the db file and the data dir: a new WAL's directory entry, and a new
 *   database's header (which says "WAL"), must be durable too, or after a power cut the
 *   frames could be unreachable. SQLite does the same directory sync at the first sync of
 *   a new WAL, which with NORMAL would come only at a checkpoint. Like SQLite we ignore a
 *   failure of the directory sync (some file systems refuse it).
 * - No WAL file (ENOENT): SQLite deletes it only after checkpointing all of it into the db
 *   file, which it fsyncs under NORMAL, so our commits are in the db file already; we
 *   fsync the db file anyway: it is rare, costs one fsync, and is right even if the
 *   journal mode had been changed behind our back (the rows are then in the db file only).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { SqlDb } from "./Sql.ts"
import { errorCode, errorMessage, StoreError } from "./StoreError.ts"
import type { Opened } from "./StoreOpen.ts"

/**
 * node:fs `fdatasync`'s signature (the default; `fsync` fits too): it runs in libuv's
 * thread pool and calls back. fdatasync is what SQLite itself uses for the WAL: the data
 * and the file size, without the timestamps, so a sync need not commit the file system's
 * journal for an mtime.
 */
export type FsyncFn = (fd: number, callback: (err: NodeJS.ErrnoException | null) => void) => void

/** An fsync(2) that failed: it poisons every later `durable` (see StoreShape.durable). */
class FsyncFailed extends Error {}

/** Called once the commits a caller made are durable, or with the error that says they may not be. */
export type Waiter = (error: StoreError | undefined) => void

interface Round {
  /** What the round covers: total_changes() when it started; NaN when that is unknown. */
  marker: number
  readonly waiters: Set<Waiter>
}

/** The WAL file a round synced, kept open between rounds. */
interface WalHandle {
  readonly fd: number
  readonly dev: number
  readonly ino: number
}

export interface GroupSync {
  readonly db: SqlDb
  readonly file: string
  readonly walFile: string
  readonly dir: string
  readonly totalChanges: () => number
  readonly fsync: FsyncFn
  running: Round | undefined
  next: Round | undefined
  /** The marker of the last round that succeeded: every commit up to it is durable. */
  synced: number
  failure: StoreError | undefined
  wal: WalHandle | undefined
  closed: boolean
  /** How many fsync(2) calls have completed. */
  fsyncs: number
}

export const makeGroupSync = (opened: Opened, fsync: FsyncFn): GroupSync => ({
  db: opened.db,
  file: opened.file,
  walFile: `${opened.file}-wal`,
  dir: path.dirname(opened.file),
  totalChanges: opened.totalChanges,
  fsync,
  running: undefined,
  next: undefined,
  synced: Number.NaN,
  failure: undefined,
  wal: undefined,
  closed: false,
  fsyncs: 0
})

const call = <A>(f: (callback: (err: NodeJS.ErrnoException | null, a: A) => void) => void): Promise<A> =>
  new Promise((resolve, reject) => f((err, a) => (err ? reject(err) : resolve(a))))

/** What a round starting now would cover: total_changes(), NaN inside a transaction. */
const marker = (g: GroupSync): number => {
  try {
    return g.db.inTransaction ? Number.NaN : g.totalChanges()
  } catch {
    return Number.NaN // closed: a round then finds the rows in the db file or the WAL
  }
}

const fsyncFd = (g: GroupSync, fd: number) =>
  new Promise<void>((resolve, reject) =>
    g.fsync(fd, (err) => {
      if (err) return reject(new FsyncFailed(`fsync: ${err.code ?? err.message}`))
      g.fsyncs++
      resolve()
    })
  )

const syncPath = async (g: GroupSync, target: string): Promise<void> => {
  const fd = await call<number>((cb) => fs.open(target, "r", cb))
  try {
    await fsyncFd(g, fd)
  } finally {
    await call<void>((cb) => fs.close(fd, (err) => cb(err, undefined))).catch(() => undefined)
  }
}

const dropWal = (g: GroupSync) => {
  if (g.wal === undefined) return
  const { fd } = g.wal
  g.wal = undefined
  fs.close(fd, () => undefined)
}

/** No WAL: the rows are in the db file (see above); its directory entry too may be new. */
const syncWithoutWal = async (g: GroupSync): Promise<void> => {
  dropWal(g)
  await syncPath(g, g.file)
  await syncPath(g, g.dir).catch(() => undefined)
}

/** The WAL file's stat; undefined when there is none. */
const statWal = (g: GroupSync): Promise<fs.Stats | undefined> =>
  call<fs.Stats>((cb) => fs.stat(g.walFile, cb)).catch((e: unknown) => {
    if (errorCode(e) === "ENOENT") return undefined
    throw e
  })

/** One round's syncs (see the header). */
const syncOnce = async (g: GroupSync): Promise<void> => {
  // The common case: one sync of the WAL this Store opened (see the header).
  if (g.wal !== undefined) return fsyncFd(g, g.wal.fd)
  const st = await statWal(g)
  if (st === undefined) return syncWithoutWal(g)
  let fd: number
  try {
    fd = await call<number>((cb) => fs.open(g.walFile, "r", cb))
  } catch (e) {
    if (errorCode(e) === "ENOENT") return syncWithoutWal(g) // deleted since the stat
    throw e
  }
  try {
    await fsyncFd(g, fd)
    await syncPath(g, g.file)
    await syncPath(g, g.dir).catch(() => undefined)
  } catch (e) {
    fs.close(fd, () => undefined)
    throw e
  }
  // Kept only once all three are synced, so that a failed round starts over. The stat's
  // inode: if the path was replaced between the stat and the open, the next round reopens.
  g.wal = { fd, dev: st.dev, ino: st.ino }
}

/** What the waiters of a round that ended with `e` are told; undefined for success. */
const roundError = (g: GroupSync, e: unknown): StoreError | undefined => {
  if (e === undefined) return undefined
  if (e instanceof FsyncFailed) {
    g.failure ??= new StoreError({
      message: `could not make ${g.file} durable (${e.message}); the last messages may not survive a power cut: ` +
        `restart p2pchat, and check the disk`
    })
    return g.failure
  }
  return new StoreError({ message: `could not make ${g.file} durable: ${errorMessage(e)}` })
}

const finish = (g: GroupSync, round: Round, e: unknown): void => {
  g.running = undefined
  if (e === undefined) g.synced = round.marker
  const error = roundError(g, e)
  for (const w of round.waiters) w(error)
  const queued = g.next
  g.next = undefined
  if (queued !== undefined && queued.waiters.size > 0) {
    if (g.failure !== undefined) for (const w of queued.waiters) w(g.failure)
    else return start(g, queued, marker(g))
  }
  if (g.closed) dropWal(g)
}

const start = (g: GroupSync, round: Round, at: number): void => {
  g.running = round
  round.marker = at
  syncOnce(g).then(() => finish(g, round, undefined), (e: unknown) => finish(g, round, e))
}

/** Calls `done` once every commit made so far is durable; returns a canceller. */
export const request = (g: GroupSync, done: Waiter): (() => void) => {
  if (g.failure !== undefined) {
    done(g.failure)
    return () => undefined
  }
  const now = marker(g)
  if (now === g.synced) {
    done(undefined) // nothing committed since the last round that succeeded
    return () => undefined
  }
  let round: Round
  if (g.running === undefined) {
    round = { marker: now, waiters: new Set([done]) }
    start(g, round, now)
  } else if (now === g.running.marker) {
    round = g.running
    round.waiters.add(done)
  } else {
    round = g.next ??= { marker: Number.NaN, waiters: new Set() }
    round.waiters.add(done)
  }
  return () => void round.waiters.delete(done)
}

/** The Store's scope closed: the WAL descriptor is closed now, or when the last round ends. */
export const close = (g: GroupSync): void => {
  g.closed = true
  if (g.running === undefined) dropWal(g)
}
