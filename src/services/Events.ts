/**
 * What a user interface shows: peers coming and going, messages, deliveries, warnings.
 * One PubSub; the console and `--json` renderers subscribe to it (CLI.md "JSON shapes").
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { TransferEvent } from "../domain/Transfer.ts"

export type PeerStatusEvent = "online" | "away" | "expired" | "left"

export type UiEvent =
  | {
    readonly event: "peer"
    readonly username: string
    readonly address: string
    readonly port: number
    readonly status: PeerStatusEvent
    readonly proto: "classic" | "p2pchat/1"
    readonly fingerprint: string | null
  }
  | {
    readonly event: "message"
    readonly id: string
    readonly from: string
    readonly text: string
    readonly mode: string
    readonly at: string
    /** When the sender says it sent it (ISO 8601), when its frame says so: secure messages. */
    readonly sentAt?: string
    /** Secure messages only: whether the user verified the sender's pinned key (`trust`). */
    readonly verified?: boolean
    /** A broadcast (`*all*`): sent to everyone, not to this node alone; a group's message: `#` and its id. */
    readonly to?: string
    /** A group's message: the group's name. */
    readonly group?: string
  }
  | { readonly event: "delivered"; readonly id: string; readonly to: string }
  | { readonly event: "warning"; readonly message: string }
  | { readonly event: "error"; readonly message: string }
  | { readonly event: "info"; readonly message: string }
  /** A file transfer's progress (at most 4 a second each) and every change of its state (protocol.md 9). */
  | TransferEvent

export class Events extends Context.Service<Events, {
  readonly publish: (event: UiEvent) => Effect.Effect<void>
  /** Events from the moment of subscription; run it in a scope before publishing. */
  readonly subscribe: Effect.Effect<Stream.Stream<UiEvent>, never, Scope.Scope>
}>()("p2pchat/Events") {}

export const make: Effect.Effect<Events["Service"], never, Scope.Scope> = Effect.gen(function*() {
  // Sliding: a slow or absent reader must never stall the node or grow memory.
  const hub = yield* PubSub.sliding<UiEvent>(4096)
  yield* Effect.addFinalizer(() => PubSub.shutdown(hub))
  return Events.of({
    publish: (event) => PubSub.publish(hub, event).pipe(Effect.asVoid),
    subscribe: Effect.map(PubSub.subscribe(hub), (sub) => Stream.fromSubscription(sub))
  })
})

export const layer: Layer.Layer<Events> = Layer.effect(Events, make)
