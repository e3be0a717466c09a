/**
 * The sending side of group-fanout-p99: a whole node (nodeRole, as `p2pchat start` builds
 * it) on its own loopback address that finds the group's other members (`p2pchat start`
 * processes, each on its own 127.0.0.x address) by presence, pins their keys with a first
 * secure message to each (trust on first use, as a user would), creates a group of itself
 * and all of them, tells them (the signed list), and then sends, one at a time, alternately:
 *
 *   - a group message (`Initiator.group`, what `send '#NAME'` does): one copy per member,
 *     each over that member's own secure session; its latency is from the call until the
 *     call returns, which is when the last member's copy is acked (every copy must come
 *     back "delivered", or the driver fails);
 *   - a 1:1 secure message to one member (`Initiator.send`, the members in turn): the 1:1
 *     ack latency of the same run, on the same nodes and the same disk, the baseline.
 *
 * Same 1 KiB text for both. Each send starts --gap-ms after the previous one returned.
 *
 *   node dist/bench/group.js --data-dir DIR --name NAME --bind 127.0.0.A
 *        --members NAME@HOST:UDPPORT,... [--count N --runs R --warmup W --gap-ms G]
 * Prints {"runs": [group p99 ms per run], "baseline": [1:1 p99 ms per run], "unit": "ms", ...}
 * or {"error": "..."}.
 */
import { Duration, Effect, Option } from "effect"
import { parseArgs } from "node:util"
import { Groups } from "../../src/chat/Groups.ts"
import { Initiator } from "../../src/chat/Initiator.ts"
import { modeOfWord } from "../../src/domain/Mode.ts"
import { testConfig } from "../../src/services/Config.ts"
import { runInNode } from "./runNode.ts"
import { PeerRegistry } from "../../src/services/PeerRegistry.ts"

const { values: opt } = parseArgs({
  options: {
    "data-dir": { type: "string" },
    name: { type: "string", default: "sender" },
    bind: { type: "string", default: "127.0.0.1" },
    members: { type: "string" },
    count: { type: "string", default: "200" },
    runs: { type: "string", default: "3" },
    warmup: { type: "string", default: "10" },
    "gap-ms": { type: "string", default: "5" }
  }
})

/** The same 1 KiB text as bench/lib/frames.mjs KIB_TEXT. */
const KIB_TEXT = "p2pchat benchmark message ".repeat(40).slice(0, 1024)
const GROUP = "bench"

const members = (opt.members ?? "").split(",").filter((m) => m !== "").map((m) => {
  const match = /^([^@]+)@([\d.]+):(\d+)$/.exec(m)
  if (!match) throw new Error(`--members: '${m}' is not NAME@HOST:PORT`)
  return { name: match[1]!, host: match[2]!, port: Number(match[3]) }
})

const percentile = (xs: Array<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}

type Failure = { readonly _tag: string; readonly message: string }
const words = (e: string | Failure) => typeof e === "string" ? e : `${e._tag}: ${e.message}`

const program = Effect.gen(function*() {
  const registry = yield* PeerRegistry
  const initiator = yield* Initiator
  const groups = yield* Groups
  // Every member answers our first announcement by unicast; wait until we know them all.
  const deadline = Date.now() + 20_000
  for (;;) {
    const known = yield* Effect.forEach(members, (m) => registry.lookup(m.name))
    if (known.every((p) => Option.isSome(p) && p.value.status === "online")) break
    if (Date.now() > deadline) {
      const missing = members.filter((_, i) => Option.isNone(known[i]!)).map((m) => m.name)
      return yield* Effect.fail(`not every member was discovered within 20 s (missing: ${missing.join(", ")})`)
    }
    yield* Effect.sleep("20 millis")
  }
  const sendOne = (to: string) =>
    initiator.send(to, KIB_TEXT, modeOfWord("secure")).pipe(
      Effect.flatMap((r) => r.state === "delivered" ? Effect.void : Effect.fail(`message ${r.id} to ${to} ended ${r.state}`)),
      Effect.mapError(words)
    )
  const allDelivered = (r: { readonly id: string; readonly recipients: ReadonlyArray<{ readonly peer: string; readonly state: string }> }) => {
    const not = r.recipients.filter((c) => c.state !== "delivered")
    if (r.recipients.length !== members.length) return Effect.fail(`group message ${r.id} went to ${r.recipients.length} of ${members.length} members`)
    return not.length === 0 ? Effect.void : Effect.fail(`group message ${r.id}: ${not.map((c) => `${c.peer} ${c.state}`).join(", ")}`)
  }
  // A first secure message to each member pins its key (a member needs one) and opens the session.
  for (const m of members) yield* sendOne(m.name)
  const made = yield* groups.create(GROUP, members.map((m) => m.name)).pipe(Effect.mapError(words))
  yield* initiator.groupChanged(made).pipe(Effect.mapError(words), Effect.flatMap(allDelivered))
  const sendGroup = initiator.group(`#${GROUP}`, KIB_TEXT).pipe(Effect.mapError(words), Effect.flatMap(allDelivered))

  for (let i = 0; i < Number(opt.warmup); i++) {
    yield* sendGroup
    yield* sendOne(members[i % members.length]!.name)
  }
  const gap = Duration.millis(Number(opt["gap-ms"]))
  const timed = <E>(e: Effect.Effect<void, E>) =>
    Effect.gen(function*() {
      yield* Effect.sleep(gap)
      const t0 = performance.now()
      yield* e
      return performance.now() - t0
    })
  const runs: Array<number> = []
  const baseline: Array<number> = []
  const p50: Array<number> = []
  const p50Baseline: Array<number> = []
  for (let r = 0; r < Number(opt.runs); r++) {
    const group: Array<number> = []
    const single: Array<number> = []
    for (let i = 0; i < Number(opt.count); i++) {
      group.push(yield* timed(sendGroup))
      single.push(yield* timed(sendOne(members[i % members.length]!.name)))
    }
    runs.push(percentile(group, 99))
    baseline.push(percentile(single, 99))
    p50.push(percentile(group, 50))
    p50Baseline.push(percentile(single, 50))
  }
  return { runs, baseline, p50, p50Baseline, unit: "ms", members: members.length }
})

if (members.length === 0) throw new Error("--members NAME@HOST:PORT,... is required")
const config = testConfig({
  dataDir: opt["data-dir"]!,
  name: opt.name,
  bind: opt.bind,
  targets: members.map((m) => ({ host: m.host, port: m.port })),
  logLevel: "warning"
})
runInNode(program, config)
