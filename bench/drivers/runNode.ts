/**
 * How a driver runs: its program inside a whole node (nodeRole) built from `config`, then
 * one JSON line on stdout, the program's result or `{"error": ...}`, and exit.
 */
import { Effect } from "effect"
import { nodeRole } from "../../src/layers/Node.ts"
import type { NodeConfig } from "../../src/services/Config.ts"

export const runInNode = <A, E, R>(program: Effect.Effect<A, E, R>, config: NodeConfig): void => {
  Effect.runPromise(
    program.pipe(
      Effect.provide(nodeRole(config)),
      Effect.catch((e) => Effect.succeed({ error: typeof e === "string" ? e : String((e as { message?: unknown }).message ?? e) }))
    ) as Effect.Effect<unknown>
  ).then(
    (result) => {
      console.log(JSON.stringify(result))
      process.exit(0)
    },
    (e) => {
      console.log(JSON.stringify({ error: String(e) }))
      process.exit(1)
    }
  )
}
