/**
 * `p2pchat send USER TEXT...` (cli.md "send"): one message, with or without a node running
 * on the data dir.
 *
 * Who USER is comes from the peers saved in the data dir (by the node, `start` or
 * `discover`, that listens there), at once when USER is there. When not, `send` waits up to
 * `--wait` (3 s; `0`: not at all) for USER to be heard: by that node, whose saved peers it
 * reads again; or, when no node listens for this data dir, by itself, on the presence port
 * (Discovery feeding a live registry: the `listeningClient` below), until USER announces
 * (a node announces when it starts, and every 8 s).
 */
import * as Argument from "effect/cli/Argument"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { CLASSIC_WARNING } from "../domain/Classic.ts"
import { type Mode, modeOfWord } from "../domain/Mode.ts"
import { usernameKey } from "../domain/Presence.ts"
import { type NodeConfig, parseDuration, UsageError } from "../services/Config.ts"
import type { BroadcastResult } from "../chat/Broadcast.ts"
import type { Initiator, SendResult } from "../chat/Initiator.ts"
import type { PeerRegistry } from "../services/PeerRegistry.ts"
import { recipientLine, toJson } from "../ui/render.ts"
import { base, fail, inCommand, lockHeld, modules, printLine, printWarning, resolveNamed } from "./base.ts"
import { reportGroup } from "./group.ts"

const DEFAULT_WAIT_MS = 3000

/** `--wait`: a duration, or 0. */
const parseWait = (text: string | undefined): Effect.Effect<number, UsageError> => {
  if (text === undefined) return Effect.succeed(DEFAULT_WAIT_MS)
  if (/^\s*0+(\.0*)?\s*(ms|s|m|h)?\s*$/.test(text)) return Effect.succeed(0)
  const ms = parseDuration(text)
  return ms === undefined
    ? Effect.fail(new UsageError({ message: `--wait: expected a duration like 500ms, 3s or 1m, or 0, got '${text}'` }))
    : Effect.succeed(ms)
}

export const unknownUser = (user: string) => `no user '${user}' is online; \`p2pchat peers\` lists who is`

/**
 * Where to learn who USER is: the saved peers ("snapshot"), or the presence port ("listen")
 * when USER is not among them, `--wait` allows waiting, and no node listens for this data
 * dir. Opens the database first, so that one it must refuse is refused before anything else.
 */
const planFor = (config: NodeConfig, user: string, waitMs: number) =>
  Effect.scoped(Effect.gen(function*() {
    const { make } = yield* modules.store
    const { readSnapshot } = yield* modules.snapshot
    const store = yield* make(config.dataDir)
    if (waitMs === 0 || (yield* lockHeld(config.dataDir, "discover"))) return "snapshot" as const
    const known = readSnapshot(store, config, new Date()).some((p) => p.key === usernameKey(user))
    return known ? "snapshot" as const : "listen" as const
  }))

/** The sending side with a registry of its own, fed by Discovery on the presence port: `send` where no node listens. */
const listeningClient = (config: NodeConfig) =>
  Effect.gen(function*() {
    const { baseLayer, chatSide, sending, storeOf } = yield* modules.roles
    const discovery = yield* modules.discovery
    const registry = yield* modules.registry
    const presence = yield* modules.presence
    const crypto = yield* modules.crypto
    const history = yield* modules.history
    return chatSide(Layer.mergeAll(sending, discovery.layer)).pipe(
      Layer.provideMerge(Layer.mergeAll(registry.layer, presence.layer, crypto.layer, history.layer)),
      Layer.provideMerge(storeOf(config)),
      Layer.provideMerge(baseLayer(config))
    )
  })

/** Sends once USER is known, waiting for them up to `waitMs`. */
const sendWhenKnown = (user: string, text: string, mode: Mode | undefined, waitMs: number) =>
  Effect.gen(function*() {
    const { PeerRegistry } = yield* modules.registry
    const { Initiator } = yield* modules.initiator
    const registry = yield* PeerRegistry
    const deadline = Date.now() + waitMs
    while (Option.isNone(yield* registry.lookup(user))) {
      if (Date.now() >= deadline) return yield* fail(unknownUser(user))
      yield* Effect.sleep(50)
    }
    return yield* (yield* Initiator).send(user, text, mode).pipe(
      Effect.mapError((e) => e.reason === "UnknownUser" ? { message: unknownUser(user) } : e)
    )
  })

/**
 * `send --all`: to every peer online, after listening `waitMs` for them when `listening`
 * (no node hears them for us). A first word that names a known peer, with more words after
 * it, is taken for a USER given with --all: a usage error (the text quoted whole is sent).
 */
const broadcastAfter = (words: ReadonlyArray<string>, mode: Mode | undefined, waitMs: number, listening: boolean) =>
  Effect.gen(function*() {
    const { PeerRegistry } = yield* modules.registry
    const { Initiator } = yield* modules.initiator
    if (listening) yield* Effect.sleep(waitMs)
    const peers = yield* (yield* PeerRegistry).list
    if (words.length > 1 && peers.some((p) => p.key === usernameKey(words[0]!))) {
      return yield* new UsageError({
        message: `--all sends to everyone and takes no USER ('${words[0]}' is a peer): \`send USER TEXT\` for one peer; ` +
          `to begin a broadcast with that name, quote the whole text`
      })
    }
    return yield* (yield* Initiator).broadcast(words.join(" "), mode)
  })

/**
 * Runs `run` on the sending side: over the saved peers, or listening for peers (`true`)
 * when no node hears them for us. `user`: who is waited for; undefined: everyone (--all).
 */
const deliver = <A, E>(
  config: NodeConfig,
  user: string | undefined,
  waitMs: number,
  run: (listening: boolean) => Effect.Effect<A, E, Initiator | PeerRegistry>
) =>
  Effect.gen(function*() {
    const { clientRole } = yield* modules.roles
    const viaSnapshot = run(false).pipe(Effect.scoped, Effect.provide(clientRole(config)))
    // everyone: the saved peers are all there is to wait for; listening finds the others
    const plan = user === undefined
      ? (waitMs === 0 || (yield* lockHeld(config.dataDir, "discover")) ? "snapshot" : "listen")
      : yield* planFor(config, user, waitMs)
    if (plan === "snapshot") return yield* viaSnapshot
    const listening = yield* listeningClient(config)
    const who = user ?? "peers"
    return yield* run(true).pipe(
      Effect.scoped,
      Effect.provide(listening),
      // The presence port is another program's (a node of another data dir, a classic
      // discovery): the saved peers only. Any other reason to fail (a --bind address that is
      // not this host's) is the user's to fix: said as PresenceSocket says it.
      Effect.catchIf(
        (e): e is { readonly _tag: "PresenceSocketError"; readonly message: string } & typeof e =>
          typeof e === "object" && e !== null && (e as { readonly _tag?: unknown })._tag === "PresenceSocketError" &&
          /EADDRINUSE/.test((e as { readonly message?: string }).message ?? ""),
        (e) =>
          printWarning(`cannot listen for ${who} (${e.message}); using the peers saved in ${config.dataDir}`).pipe(
            Effect.andThen(viaSnapshot)
          )
      )
    )
  })

/** `send '#NAME' TEXT`: to the members of a group, over the peers the data dir's node saved. */
const toGroup = (config: NodeConfig, ref: string, text: string) =>
  Effect.gen(function*() {
    const { clientRole } = yield* modules.roles
    const { Initiator } = yield* modules.initiator
    return yield* Effect.flatMap(Initiator, (i) => i.group(ref, text)).pipe(Effect.scoped, Effect.provide(clientRole(config)))
  })

/** What `send` prints for one USER, and its failure when the message is held. */
const reportOne = (config: NodeConfig, result: SendResult) =>
  Effect.gen(function*() {
    if (result.mode === "classic-3des") yield* printWarning(CLASSIC_WARNING)
    if (config.json) yield* printLine(toJson(result))
    // Held for a key (the warning above says why): stored, not delivered, so not a success.
    if (result.state === "pending") return yield* fail(`not sent to ${result.peer} now: the message is kept as pending`)
    if (!config.json) {
      yield* printLine(result.state === "delivered" ? `delivered to ${result.peer}` : `sent to ${result.peer} (classic peers do not confirm delivery)`)
    }
  })

/** What `send --all` prints, and its failure unless every copy sent was delivered (or written to a classic peer). */
const reportAll = (config: NodeConfig, result: BroadcastResult) =>
  Effect.gen(function*() {
    if (result.recipients.some((r) => r.mode === "classic-3des")) yield* printWarning(CLASSIC_WARNING)
    if (config.json) yield* printLine(toJson(result))
    else for (const r of result.recipients) yield* printLine(recipientLine(r))
    const reached = result.recipients.filter((r) => r.state === "delivered" || r.state === "sent").length
    const short = result.recipients.filter((r) => r.state === "pending" || r.state === "failed" || r.state === "refused").length
    if (result.recipients.length === 0) return yield* fail("nobody is online; `p2pchat peers` lists who is")
    if (reached === 0 && short === 0) return yield* fail("nobody can be sent to securely; --plain or --classic reaches the others")
    if (short > 0) return yield* fail(`not delivered to ${short} of ${reached + short} recipient(s); the pending ones go again when heard`)
  })

export const send = Command.make("send", {
  user: Argument.String("user").pipe(Argument.withDescription("who to send to (none with --all)"), Argument.optional),
  text: Argument.String("text").pipe(Argument.withDescription("the message (its words are joined with spaces)"), Argument.variadic()),
  all: Flag.Boolean("all").pipe(Flag.withDescription("to every peer online (secure; --plain or --classic also reaches the others)"), Flag.withDefault(false)),
  secure: Flag.Boolean("secure").pipe(Flag.withDescription("Noise session (default for p2pchat peers)"), Flag.withDefault(false)),
  plain: Flag.Boolean("plain").pipe(Flag.withDescription("unencrypted"), Flag.withDefault(false)),
  classic: Flag.Boolean("classic").pipe(Flag.withDescription("the classic 3DES dialect (NOT secure)"), Flag.withDefault(false)),
  wait: Flag.String("wait").pipe(
    Flag.withDescription("how long to wait for USER (--all: for peers) to be heard when not known yet, default 3s; 0: only peers known now"),
    Flag.optional
  )
}, (p) =>
  Effect.gen(function*() {
    const first = Option.getOrUndefined(p.user)
    if (!p.all && first === undefined) return yield* new UsageError({ message: "missing USER" })
    if (!p.all && p.text.length === 0) return yield* new UsageError({ message: "missing TEXT" })
    const words = p.all ? [...(first === undefined ? [] : [first]), ...p.text] : p.text
    if (words.join(" ").trim() === "") return yield* new UsageError({ message: "the message is empty: give the text to send" })
    const chosen = (["secure", "plain", "classic"] as const).filter((m) => p[m])
    if (chosen.length > 1) return yield* new UsageError({ message: "choose one of --secure, --plain, --classic" })
    const mode: Mode | undefined = chosen[0] === undefined ? undefined : modeOfWord(chosen[0])
    const waitMs = yield* parseWait(Option.getOrUndefined(p.wait))
    const config = yield* resolveNamed(yield* base)
    if (!p.all && first!.startsWith("#")) {
      if (mode !== undefined && mode !== "noise") return yield* new UsageError({ message: "a group message is secure only: no --plain or --classic" })
      return yield* reportGroup(config, yield* toGroup(config, first!, words.join(" ")))
    }
    if (!p.all) return yield* reportOne(config, yield* deliver(config, first, waitMs, () => sendWhenKnown(first!, words.join(" "), mode, waitMs)))
    yield* reportAll(config, yield* deliver(config, undefined, waitMs, (listening) => broadcastAfter(words, mode, waitMs, listening)))
  }).pipe(inCommand("send"))).pipe(
  Command.withDescription("send one message (--all: to every peer online); exit 0 once delivered (acked), or sent to a classic peer")
)
