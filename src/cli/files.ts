/**
 * The file commands (cli.md "send-file", "accept", "decline", "files"): offering files and
 * folders, taking or refusing an offer, and the list of transfers.
 *
 * Files go by pull: the receiver's node fetches from the sender's node over a secure session
 * on the chat port. So a transfer needs a node at each end, and the process that runs the
 * node of a data dir (`start`) does the work: it serves the files offered from its data dir
 * and fetches the offers accepted there. The commands work with or without it:
 *
 * - beside a running node (the data dir's responder lock is held: `start`), `send-file`
 *   stores the offer and sends it, and the node serves it; `accept` records the acceptance
 *   in the data dir, and the node fetches. Both then follow the transfer in the data dir's
 *   store until it ends (`--no-wait`: they return at once).
 * - without one, they run the node themselves (`start` without the console) for as long as
 *   their transfers last: `send-file` serves until the receiver has every file (or declined,
 *   or the user stops it), `accept` fetches until the files are in place.
 */
import * as Argument from "effect/cli/Argument"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { FileSent } from "../chat/Initiator.ts"
import type { Transfer } from "../domain/Transfer.ts"
import { type NodeConfig, UsageError } from "../services/Config.ts"
import type { TransferError, Transfers } from "../transfer/Transfers.ts"
import { toJson } from "../ui/render.ts"
import { base, fail, inCommand, lockHeld, modules, printLine, printWarning, resolve, resolveNamed } from "./base.ts"

/** How often a transfer is read again while it is followed (at most 4 updates a second). */
const POLL_MS = 250

/** A TransferError as the command line says it: a usage error (exit 2) or a failure (exit 1). */
const said = (e: TransferError) => e.reason === "Usage" ? new UsageError({ message: e.message }) : { message: e.message }

/**
 * The transfer an id names: the whole id, or a prefix of it that names one transfer (the
 * lines show the first 8 characters).
 */
export const findTransfer = (transfers: Transfers["Service"], given: string) =>
  Effect.gen(function*() {
    const exact = yield* transfers.get(given).pipe(Effect.option)
    if (Option.isSome(exact)) return exact.value
    const all = yield* transfers.list.pipe(Effect.mapError(said))
    const hits = given.length >= 4 ? all.filter((t) => t.id.startsWith(given.toLowerCase())) : []
    if (hits.length === 1) return hits[0]!
    if (hits.length > 1) return yield* fail(`'${given}' names ${hits.length} transfers: give more of the id (\`p2pchat files\` lists them)`)
    return yield* fail(`no transfer '${given}' here; \`p2pchat files\` lists them`)
  })

/**
 * Reads `ids` again every POLL_MS and shows each change until every one has ended; fails
 * (exit 1) unless all are done. `prefix`: the hint's command prefix.
 */
const follow = (config: NodeConfig, transfers: Transfers["Service"], ids: ReadonlyArray<string>, shown: ReadonlyArray<string> = []) =>
  Effect.gen(function*() {
    const { makeFollower } = yield* Effect.promise(() => import("../ui/progress.ts"))
    const { screen } = yield* Effect.promise(() => import("../ui/Screen.ts"))
    const { ended } = yield* Effect.promise(() => import("../ui/transferView.ts"))
    const follower = makeFollower(config.json, (line) => screen.print(line), "p2pchat ")
    // the offers send-file has printed already
    if (!config.json) for (const id of shown) follower.seen(id, "offered")
    const latest = new Map<string, Transfer>()
    yield* Effect.addFinalizer(() => Effect.sync(() => follower.close()))
    for (;;) {
      for (const id of ids) {
        if (latest.has(id) && ended(latest.get(id)!)) continue
        const t = yield* transfers.get(id).pipe(Effect.mapError(said))
        latest.set(id, t)
        follower.update(t)
      }
      if ([...latest.values()].length === ids.length && [...latest.values()].every(ended)) break
      yield* Effect.sleep(POLL_MS)
    }
    follower.close()
    const short = [...latest.values()].filter((t) => t.state !== "done")
    if (short.length > 0) {
      return yield* fail(short.map((t) => `${t.name}: ${t.state}${t.reason === undefined ? "" : ` (${t.reason})`}`).join("; "))
    }
  }).pipe(Effect.scoped)

/**
 * Runs `run` with the Transfers (and Initiator) of this data dir: beside its running node
 * (which serves and fetches), or in a node run here for the time (`start` without the
 * console), whose log shows warnings and errors only (all of it with `--log-level debug`).
 */
const withNode = <A, E>(config: NodeConfig, run: (running: boolean) => Effect.Effect<A, E, any>) =>
  Effect.gen(function*() {
    const running = yield* lockHeld(config.dataDir, "respond")
    const { clientRole, nodeRole, RoleLogger } = yield* modules.roles
    const { consoleLogger } = yield* modules.console
    const Logger = yield* Effect.promise(() => import("effect/Logger"))
    if (running) return yield* (run(true).pipe(Effect.scoped, Effect.provide(clientRole(config))) as Effect.Effect<A, E>)
    const quiet = Logger.make<unknown, void>((options) => {
      if (config.logLevel === "debug" || !(options.logLevel === "Info" || options.logLevel === "Debug")) consoleLogger.log(options)
    })
    return yield* (run(false).pipe(
      Effect.scoped,
      Effect.provide(nodeRole(config)),
      Effect.provideService(RoleLogger, quiet)
    ) as Effect.Effect<A, E>)
  })

/**
 * How long send-file waits to know the recipient: without a node the registry starts empty
 * (a node announces every 8 s); beside one, its saved peers may lag what it has just heard
 * by a moment (as `send`'s default --wait).
 */
const HEAR_WAIT_MS = { alone: 10_000, besideNode: 3_000 }

/** Waits (bounded) until USER is known; a group's members are looked up as they come. */
const heard = (who: string, running: boolean) =>
  Effect.gen(function*() {
    if (who.startsWith("#")) return
    const { PeerRegistry } = yield* modules.registry
    const registry = yield* PeerRegistry
    const deadline = Date.now() + (running ? HEAR_WAIT_MS.besideNode : HEAR_WAIT_MS.alone)
    while (Option.isNone(yield* registry.lookup(who)) && Date.now() < deadline) yield* Effect.sleep(100)
  })

const target = Argument.String("target").pipe(Argument.withDescription("who to send to: USER, or '#GROUP' (its members)"), Argument.optional)
const paths = Argument.String("path").pipe(Argument.withDescription("the files and folders to offer (a folder is sent whole)"), Argument.variadic())
const noWait = Flag.Boolean("no-wait").pipe(
  Flag.withDescription("return once offered (accepted: once recorded); a node running on the data dir does the rest"),
  Flag.withDefault(false)
)

/** Usage errors found before anything is opened: no target, no path, a path that is not there. */
const checkPaths = (who: string | undefined, given: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    if (who === undefined) return yield* new UsageError({ message: "missing USER (or '#GROUP')" })
    if (given.length === 0) return yield* new UsageError({ message: "missing PATH: give the files or folders to send" })
    const fs = yield* Effect.promise(() => import("node:fs"))
    for (const p of given) {
      const stat = fs.statSync(p, { throwIfNoEntry: false })
      if (stat === undefined) return yield* fail(`cannot send ${p}: no such file or folder`)
      if (!stat.isFile() && !stat.isDirectory()) return yield* fail(`cannot send ${p}: not a file or a folder`)
    }
  })

export const sendFile = Command.make("send-file", { target, paths, noWait }, (p) =>
  Effect.gen(function*() {
    const who = Option.getOrUndefined(p.target)
    yield* checkPaths(who, p.paths)
    const config = yield* resolveNamed(yield* base)
    const { Initiator } = yield* modules.initiator
    const { Transfers } = yield* modules.transfers
    yield* withNode(config, (running) =>
      Effect.gen(function*() {
        yield* heard(who!, running)
        const sent = yield* (yield* Initiator).sendFile(who!, p.paths).pipe(
          Effect.mapError((e) => e._tag === "TransferError" ? said(e) : e)
        )
        yield* reportOffers(config, who!, sent)
        if (p.noWait && running) return
        if (p.noWait) yield* printWarning("no node runs on this data dir: serving here until the receiver has the files (Ctrl-C stops)")
        const ids = sent.offers.map((o) => o.id)
        yield* follow(config, yield* Transfers, ids, ids)
      }))
  }).pipe(inCommand("send-file"))).pipe(
  Command.withDescription("offer files and folders to USER or a group; exit 0 once the receiver has them all (--no-wait: once offered)")
)

/** What send-file says of its offers; exit 1 when an offer could not be delivered now (it stays pending). */
const reportOffers = (config: NodeConfig, who: string, sent: FileSent) =>
  Effect.gen(function*() {
    if (!config.json) {
      const { formatBytes } = yield* Effect.promise(() => import("../ui/transferView.ts"))
      for (const o of sent.offers) {
        const what = o.count === 1 ? `${o.name} (${formatBytes(o.size)})` : `${o.name}/ (${o.count} files, ${formatBytes(o.size)})`
        yield* printLine(`offered ${what} to ${who}, SHA-256 ${o.sha256} [${o.id.slice(0, 8)}]`)
      }
    }
    const held = sent.recipients.filter((r) => r.state === "pending" || r.state === "failed")
    if (held.length > 0) {
      return yield* fail(`the offer is not delivered to ${held.map((r) => r.peer).join(", ")} now: it is kept as pending, sent when heard`)
    }
  })

/** `accept ID`: beside a running node it records the acceptance (the node fetches); without one, fetches here. */
export const accept = Command.make("accept", {
  id: Argument.String("id").pipe(Argument.withDescription("the offer's id (its first 8 characters are enough)")),
  noWait
}, (p) =>
  Effect.gen(function*() {
    const config = yield* resolveNamed(yield* base)
    const { Transfers } = yield* modules.transfers
    yield* withNode(config, (running) =>
      Effect.gen(function*() {
        const transfers = yield* Transfers
        const found = yield* findTransfer(transfers, p.id)
        if (found.direction !== "in") return yield* fail(`${found.id.slice(0, 8)} is a file you offered, not one offered to you`)
        const t = yield* transfers.accept(found.id).pipe(Effect.mapError(said))
        if (p.noWait && running) {
          return yield* printLine(config.json ? toJson({ event: "file", ...t }) : `accepted ${t.name}: the node running on this data dir fetches it`)
        }
        yield* follow(config, transfers, [t.id])
      }))
  }).pipe(inCommand("accept"))).pipe(Command.withDescription("take a file or folder offered to you; exit 0 once it is received and verified"))

export const decline = Command.make("decline", {
  id: Argument.String("id").pipe(Argument.withDescription("the offer's id (its first 8 characters are enough)"))
}, (p) =>
  Effect.gen(function*() {
    const config = yield* resolveNamed(yield* base)
    const { clientRole } = yield* modules.roles
    const { Transfers } = yield* modules.transfers
    const t = yield* Effect.gen(function*() {
      const transfers = yield* Transfers
      const found = yield* findTransfer(transfers, p.id)
      return yield* transfers.decline(found.id).pipe(Effect.mapError(said))
    }).pipe(Effect.scoped, Effect.provide(clientRole(config)))
    yield* printLine(config.json ? toJson({ event: "file", ...t }) : `declined ${t.name} from ${t.peer}`)
  }).pipe(inCommand("decline"))).pipe(Command.withDescription("refuse a file or folder offered to you (the sender is told)"))

export const files = Command.make("files", {}, () =>
  Effect.gen(function*() {
    const config = yield* resolve(yield* base)
    const { readTransfers } = yield* modules.transfers
    const { openReadOnly } = yield* modules.read
    const list = yield* Effect.scoped(Effect.gen(function*() {
      const store = yield* openReadOnly(config.dataDir)
      return store === undefined ? [] : yield* readTransfers(store)
    }))
    if (config.json) return yield* printLine(toJson(list))
    if (list.length === 0) return yield* printLine("no transfers; `p2pchat send-file USER PATH` offers a file")
    const { fileRow } = yield* Effect.promise(() => import("../ui/transferView.ts"))
    for (const t of list) yield* printLine(fileRow(t))
  }).pipe(inCommand("files"))).pipe(Command.withDescription("every file transfer, in and out, with its state"))
