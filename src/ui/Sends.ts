/**
 * The sends the console started, in the background: the prompt never waits for a peer.
 * Messages to one peer go in the order they were typed (one queue per peer); peers do not
 * wait for each other. `settle` waits, bounded, for everything started: a console reading
 * a script waits for its sends before it exits, and says which did not finish.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type { SendResult } from "../chat/Initiator.ts"
import type { SendError } from "../chat/SendError.ts"
import type { Mode } from "../domain/Mode.ts"
import { usernameKey } from "../domain/Presence.ts"

export interface Sends {
  /** Queues a message to `to` (a peer, or `#` and a group's id); `report` says how it went once it went. */
  readonly send: (to: string, text: string, mode: Mode | undefined) => Effect.Effect<void>
  /** Other work to wait for as well (messages sent again after a `trust`). */
  readonly track: (work: Effect.Effect<unknown>) => Effect.Effect<void>
  /** Waits at most `ms` for everything started; how many are still under way. */
  readonly settle: (ms: number) => Effect.Effect<number>
  /** How many are under way now. */
  readonly underWay: () => number
}

/** How a send ended: its result (a SendResult, or for a group a GroupSendResult), or its error. */
export type Outcome<R = SendResult> = { readonly _tag: "sent"; readonly result: R } | { readonly _tag: "failed"; readonly error: SendError }

interface Job {
  readonly to: string
  readonly text: string
  readonly mode: Mode | undefined
  readonly done: Deferred.Deferred<void>
}

export const makeSends = <R = SendResult>(
  send: (to: string, text: string, mode: Mode | undefined) => Effect.Effect<R, SendError>,
  report: (to: string, outcome: Outcome<R>) => Effect.Effect<void>
): Effect.Effect<Sends, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const queues = new Map<string, Queue.Queue<Job>>()
    const started = new Set<Deferred.Deferred<void>>()

    const finish = (done: Deferred.Deferred<void>) =>
      Effect.andThen(Effect.sync(() => void started.delete(done)), Deferred.succeed(done, undefined))

    const run = (job: Job) =>
      send(job.to, job.text, job.mode).pipe(
        Effect.map((result): Outcome<R> => ({ _tag: "sent", result })),
        Effect.catch((error) => Effect.succeed<Outcome<R>>({ _tag: "failed", error })),
        Effect.flatMap((outcome) => report(job.to, outcome)),
        Effect.ensuring(finish(job.done))
      )

    const queueOf = (key: string) =>
      Effect.gen(function*() {
        const known = queues.get(key)
        if (known !== undefined) return known
        const queue = yield* Queue.unbounded<Job>()
        queues.set(key, queue)
        yield* Effect.forkIn(Effect.forever(Effect.flatMap(Queue.take(queue), run)), scope)
        return queue
      })

    const begin = () =>
      Effect.map(Deferred.make<void>(), (done) => {
        started.add(done)
        return done
      })

    return {
      send: (to, text, mode) =>
        Effect.gen(function*() {
          const done = yield* begin()
          yield* Queue.offer(yield* queueOf(usernameKey(to)), { to, text, mode, done })
        }),
      track: (work) =>
        Effect.gen(function*() {
          const done = yield* begin()
          yield* Effect.forkIn(Effect.ensuring(Effect.ignore(work), finish(done)), scope)
        }),
      settle: (ms) =>
        Effect.gen(function*() {
          yield* Effect.timeoutOption(Effect.forEach([...started], Deferred.await, { discard: true }), ms)
          return started.size
        }),
      underWay: () => started.size
    }
  })
