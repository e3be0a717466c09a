/**
 * The web UI's JSON API (docs/web.md "API"): what the page reads (who you are, the peers, the
 * keys pinned, the groups, a conversation, a peer's fingerprints) and what it does (send,
 * away/back, trust), over the node's own services. Every answer is one of the shapes the
 * CLI's `--json` prints (cli.md "JSON output"), written with the same `toJson`.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { Groups } from "../chat/Groups.ts"
import { Initiator } from "../chat/Initiator.ts"
import { ALL, groupConversation } from "../domain/Conversation.ts"
import { fingerprint } from "../domain/Fingerprint.ts"
import { usernameKey } from "../domain/Presence.ts"
import { Announcer } from "../services/Announcer.ts"
import { Config } from "../services/Config.ts"
import { Crypto, idToKey } from "../services/Crypto.ts"
import { History } from "../services/History.ts"
import { PeerRegistry } from "../services/PeerRegistry.ts"
import { peerView } from "../services/PeerSnapshot.ts"
import { Trust } from "../trust/Trust.ts"
import { groupSummary } from "../ui/groupView.ts"
import { withVerified } from "../ui/render.ts"
import { WebError } from "./WebError.ts"

/** The services the API works with: the node's, as `start` builds them. */
export const services = Effect.gen(function*() {
  return {
    config: yield* Config,
    registry: yield* PeerRegistry,
    history: yield* History,
    initiator: yield* Initiator,
    trust: yield* Trust,
    groups: yield* Groups,
    identity: (yield* Crypto).identity,
    announcer: yield* Effect.serviceOption(Announcer)
  }
})

export type Services = Effect.Success<typeof services>

/** How many messages of a conversation the page is given at once (the last ones). */
export const HISTORY_LIMIT = 500

const asWeb = (status: number) => (e: { readonly message: string }) => new WebError({ status, message: e.message, cause: e })

/** `whoami --json`. */
export const whoami = (s: Services) => ({
  username: s.config.name ?? null,
  fingerprint: s.identity.fingerprint,
  id: s.identity.id,
  dataDir: s.config.dataDir,
  udpPort: s.config.udpPort,
  tcpPort: s.config.tcpPort
})

/** `peers --json`: sorted by name. */
export const peers = (s: Services) =>
  Effect.map(s.registry.list, (list) => [...list].map(peerView).sort((a, b) => a.username.localeCompare(b.username)))

/** The keys pinned, by name: what the page marks verified, unverified or changed (docs/web.md). */
export const keys = (s: Services) =>
  Effect.map(
    s.history.pins(),
    (pins) => pins.map((p) => ({ username: p.username, fingerprint: fingerprint(p.publicKey), verified: p.verified, pinnedAt: p.pinnedAt }))
  ).pipe(Effect.mapError(asWeb(500)))

/** `group list --json`. */
export const groups = (s: Services) => Effect.map(s.groups.list, (list) => list.map(groupSummary)).pipe(Effect.mapError(asWeb(500)))

/**
 * A conversation, as `history --json` prints it: with a peer (its one-to-one messages, each
 * secure one with `verified`), `*all*` (each broadcast once with its recipients) or a group's
 * (`#` and its id, the same shape as `*all*`).
 */
export const conversation = (s: Services, name: string) =>
  Effect.gen(function*() {
    if (name === ALL) return yield* s.history.inConversation(ALL, { limit: HISTORY_LIMIT })
    if (name.startsWith("#")) {
      const group = yield* s.groups.resolve(name.slice(1)).pipe(Effect.mapError(asWeb(404)))
      return yield* s.history.inConversation(groupConversation(group.state.id), { limit: HISTORY_LIMIT })
    }
    const verified = new Set((yield* s.history.pins()).filter((p) => p.verified).map((p) => p.username))
    const entries = yield* s.history.conversation(usernameKey(name), { limit: HISTORY_LIMIT })
    return withVerified(entries.filter((e) => e.conversation === undefined), verified)
  }).pipe(Effect.mapError((e) => e instanceof WebError ? e : asWeb(500)(e)))

const orNone = <A>(self: Effect.Effect<Option.Option<A>, unknown>) => Effect.orElseSucceed(self, () => Option.none<A>())

/** The console's `verify USER --json`: your fingerprint and USER's pinned, announced and presented ones. */
export const verify = (s: Services, user: string) =>
  Effect.gen(function*() {
    const key = usernameKey(user)
    const pinned = Option.map(yield* orNone(s.history.getPin(key)), fingerprint)
    const verified = Option.isSome(pinned) && (yield* s.history.isVerified(key).pipe(Effect.orElseSucceed(() => false)))
    const peer = yield* s.registry.lookup(user)
    const id = Option.isSome(peer) ? peer.value.id : undefined
    const presented = Option.map(yield* orNone(s.history.presentedKey(key)), fingerprint)
    return {
      username: user,
      fingerprint: s.identity.fingerprint,
      pinned: Option.getOrNull(pinned),
      verified,
      announced: id === undefined ? null : fingerprint(idToKey(id)),
      presented: Option.getOrNull(presented)
    }
  })

export const SendBody = Schema.Struct({ to: Schema.String, text: Schema.String })
export const AwayBody = Schema.Struct({ away: Schema.Boolean })
export const TrustBody = Schema.Struct({ user: Schema.String, fingerprint: Schema.String })

/** The longest text the page may send; the Initiator still checks that it fits one frame. */
export const MAX_TEXT = 60_000

/**
 * Sends what the composer holds: to a peer (`send --json`'s object), to everyone (`*all*`:
 * `send --all --json`'s) or to a group (`#` and its id or name: `send '#NAME' --json`'s).
 */
export const send = (s: Services, body: typeof SendBody.Type) =>
  Effect.gen(function*() {
    if (body.text.trim() === "") return yield* new WebError({ status: 400, message: "nothing to send" })
    if (body.text.length > MAX_TEXT) return yield* new WebError({ status: 413, message: "the text is too long for one message" })
    if (body.to === ALL) return yield* s.initiator.broadcast(body.text)
    if (body.to.startsWith("#")) return yield* s.initiator.group(body.to.slice(1), body.text)
    return yield* s.initiator.send(body.to, body.text)
  }).pipe(Effect.mapError((e) => e instanceof WebError ? e : asWeb(502)(e)))

/** Away or back, as the console's `away`/`back`: announced at once. */
export const setAway = (s: Services, away: boolean) =>
  Option.isSome(s.announcer)
    ? Effect.as(s.announcer.value.setAway(away), { away })
    : Effect.fail(new WebError({ status: 409, message: "away/back need a running announcer (p2pchat start)" }))

/** Whether this node announces itself away now. */
export const getAway = (s: Services) =>
  Option.isSome(s.announcer) ? Effect.map(s.announcer.value.away, (away) => ({ away })) : Effect.succeed({ away: false })

/** The console's `trust USER FINGERPRINT`: the messages that waited for it go in the background. */
export const trust = (s: Services, body: typeof TrustBody.Type) =>
  Effect.gen(function*() {
    const trusted = yield* s.trust.trustPeer(body.user, body.fingerprint).pipe(Effect.mapError(asWeb(400)))
    yield* Effect.forkDetach(s.initiator.retryPending(body.user))
    return { username: body.user, fingerprint: trusted, verified: true }
  })
