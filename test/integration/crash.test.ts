/**
 * Crash safety (issue 6, item 3), end to end through the built CLI: a sender streams 1,000
 * messages at a steady pace (console `msg bob mNNNN` lines on stdin) while the receiver or
 * the sender is killed with SIGKILL and restarted on the same data dir and ports.
 *
 * Properties checked:
 *   - no message the sender saw acknowledged (`{"event":"delivered"}` with `--json`) is
 *     missing from the receiver's history: an ack means "stored durably";
 *   - after the restarts and a bounded settle period every one of the 1,000 texts is in the
 *     receiver's history exactly once (no duplicate rows, no gaps): what was not acked
 *     stayed pending on the sender's side and was sent again, and the receiver stored each
 *     id once;
 *   - the sender's own history holds each text once, and nothing is left pending.
 *
 * Loopback only: every node gets `--bind 127.0.0.1` and a 127.0.0.1 target, on free ports.
 * Every wait is bounded; every process is killed in afterEach (cleanup()).
 */
import { describe, expect, it } from "vitest"
import {
  type CliProcess,
  type HistoryRow,
  isPeer,
  nodeOptions,
  nodePair,
  type NodeSpec,
  parseJsonLine,
  runCli,
  sleep,
  spawnCli,
  useBuiltCli,
  waitFor
} from "../support/cli.ts"

const TOTAL = 1_000
/** One console line every PACE_MS: 100 messages a second. */
const PACE_MS = 10
/** How long the sender gets, after its last line, to deliver what is still pending. */
const SETTLE_MS = 20_000

const texts = Array.from({ length: TOTAL }, (_, i) => `m${String(i + 1).padStart(4, "0")}`)

const startNode = (n: NodeSpec): CliProcess =>
  spawnCli(["start", ...nodeOptions(n), "--announce-every", "500ms", "--away-after", "2s", "--json"], { stdin: "pipe" })

const pair = () => nodePair("p2pchat-crash-")

/** `history PEER --json` on a data dir (the node that owns it must be stopped or killed). */
const historyOf = async (n: NodeSpec, peer: string): Promise<Array<HistoryRow>> => {
  const r = await runCli(["history", peer, "--json", "--data-dir", n.dataDir], { timeoutMs: 15_000 })
  expect(r.code, `history ${peer} on ${n.name}'s data dir failed:\n${r.stderr}`).toBe(0)
  return JSON.parse(r.stdout) as Array<HistoryRow>
}

/**
 * What a sender process printed, read incrementally: the ids it saw acknowledged (with the
 * time), and the sends that failed (`{"event":"error","message":"not delivered: ..."}`).
 * Shared across the incarnations of one sender.
 */
class AckLog {
  readonly acked = new Map<string, number>()
  notDelivered = 0
  private readonly seen = new Map<CliProcess, number>()
  scan(proc: CliProcess): void {
    let next = this.seen.get(proc) ?? 0
    for (; next < proc.stdout.length; next++) {
      const line = proc.stdout[next]!
      const v = parseJsonLine(line)
      if (v?.event === "delivered" && v.to === "bob") {
        if (!this.acked.has(v.id)) this.acked.set(v.id, proc.stdoutAt[next]!)
      } else if (v?.event === "error" && typeof v.message === "string" && v.message.startsWith("not delivered")) {
        this.notDelivered++
      }
    }
    this.seen.set(proc, next)
  }
}

/**
 * Writes `msg bob TEXT` lines to a node's console, one every PACE_MS (caught up in batches
 * when the timer is late), until all are written or `stop()` says so (the node was killed).
 * Returns how many lines were written, and when each was written.
 */
const feed = async (proc: CliProcess, lines: ReadonlyArray<string>, stop: () => boolean = () => false) => {
  const t0 = Date.now()
  const writtenAt = new Map<string, number>()
  let written = 0
  // bounded: ends after lines.length * PACE_MS plus timer slack, or at `stop`
  while (written < lines.length && !stop() && proc.running()) {
    const due = Math.min(lines.length, Math.floor((Date.now() - t0) / PACE_MS) + 1)
    if (due > written) {
      const batch = lines.slice(written, due)
      proc.child.stdin!.write(batch.map((t) => `msg bob ${t}\n`).join(""))
      const now = Date.now()
      for (const t of batch) writtenAt.set(t, now)
      written = due
    }
    await sleep(PACE_MS / 2)
  }
  return { written, writtenAt, ms: Date.now() - t0 }
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

const kill9 = async (proc: CliProcess) => {
  proc.child.kill("SIGKILL")
  await proc.exited
}

/** Every text in `rows`, counted. */
const countTexts = (rows: ReadonlyArray<HistoryRow>) => {
  const counts = new Map<string, number>()
  for (const r of rows) counts.set(r.text, (counts.get(r.text) ?? 0) + 1)
  return counts
}

/**
 * The checks shared by both tests, on the histories read after both nodes stopped.
 * Returns a short summary for the log.
 */
const checkExactlyOnce = (acked: ReadonlyMap<string, number>, bobRows: ReadonlyArray<HistoryRow>, aliceRows: ReadonlyArray<HistoryRow>) => {
  const received = bobRows.filter((r) => r.direction === "received")
  const bobIds = new Set(received.map((r) => r.id))
  const counts = countTexts(received)
  const lostAcked = [...acked.keys()].filter((id) => !bobIds.has(id))
  const duplicates = [...counts].filter(([, n]) => n > 1).map(([t, n]) => `${t} x${n}`)
  const missing = texts.filter((t) => !counts.has(t))
  const unexpected = [...counts.keys()].filter((t) => !texts.includes(t))
  const sent = aliceRows.filter((r) => r.direction === "sent")
  const senderDuplicates = [...countTexts(sent)].filter(([, n]) => n > 1).map(([t, n]) => `${t} x${n}`)
  const stillPending = sent.filter((r) => r.state !== "delivered").map((r) => `${r.text} ${r.state}`)
  const summary = {
    acked: acked.size,
    bobRows: received.length,
    lostAcked: lostAcked.length,
    duplicates: duplicates.length,
    missing: missing.length,
    senderRows: sent.length,
    senderPending: stillPending.length
  }
  console.log(`crash check: ${JSON.stringify(summary)}`)
  // the order matters for the report: acked-but-lost is the worst failure, then duplicates
  expect(lostAcked, "acknowledged messages missing from bob's history").toEqual([])
  expect(duplicates, "texts stored more than once by bob").toEqual([])
  expect(unexpected, "texts bob stored that alice never sent").toEqual([])
  expect(senderDuplicates, "texts stored more than once by alice").toEqual([])
  expect(missing, "texts never delivered to bob (gaps)").toEqual([])
  expect(stillPending, "alice's messages not delivered after the settle period").toEqual([])
  expect(received.length).toBe(TOTAL)
  expect(sent.length).toBe(TOTAL)
  return summary
}

useBuiltCli({ cleanupAfterEach: true })

describe("crash safety: kill -9 mid-stream, 1,000 messages", () => {
  it("the receiver killed with SIGKILL 4 times while the sender streams: no acked message lost, each text exactly once", async () => {
    const t0 = Date.now()
    const { alice, bob } = await pair()
    const log = new AckLog()
    const bobs: Array<CliProcess> = [startNode(bob)]
    const a = startNode(alice)
    await Promise.all([
      a.waitForJson(isPeer("bob", "online"), 8_000),
      bobs[0]!.waitForJson(isPeer("alice", "online"), 8_000)
    ])

    // The killer: at 150, 400 and 650 acks (well inside the stream), kill -9 bob, leave him
    // dead 0.5-1 s (alice's sends fail meanwhile and stay pending), restart him on the same
    // data dir and ports. At 900 acks once more, and leave him dead until the stream has
    // ended: the last ~100 messages are then pending with no new message to push them, so
    // only bob's announcements (PROTOCOL.md 3) can get them retried.
    const kills: Array<{ readonly atAck: number; readonly downMs: number; readonly restartedAt: number }> = []
    let streaming = true
    // The stream writes one message per PACE_MS from now: a kill is due at its threshold of
    // acks, or once the stream is 50 messages past it when acks lag (a machine busy for a
    // while), so that all four happen mid-stream however slow the acks are.
    const streamStart = Date.now()
    const writtenBy = () => Math.floor((Date.now() - streamStart) / PACE_MS)
    const killer = (async () => {
      for (const threshold of [150, 400, 650, 900]) {
        await waitFor(`${threshold} acks`, () => {
          log.scan(a)
          return log.acked.size >= threshold || writtenBy() >= threshold + 50 || !streaming ? true : undefined
        }, 30_000, 10)
        if (!streaming) return
        const victim = bobs.at(-1)!
        const killedAt = Date.now()
        await kill9(victim)
        const atAck = log.acked.size
        if (threshold === 900) await waitFor("the end of the stream", () => (streaming ? undefined : true), 30_000, 10)
        await sleep(500 + Math.floor(Math.random() * 500))
        bobs.push(startNode(bob))
        kills.push({ atAck, downMs: Date.now() - killedAt, restartedAt: Date.now() })
      }
    })().catch((e: unknown) => e as Error)

    const stream = await feed(a, texts.map((t) => t))
    streaming = false
    const killerFailed = await killer
    expect(killerFailed, "the killer failed").toBeUndefined()
    log.scan(a)
    const ackedAtStreamEnd = log.acked.size
    const streamEnd = Date.now()

    // Settle: the pending messages go again once bob is back (he announces every 500 ms).
    await waitFor(`all ${TOTAL} acknowledged (have ${log.acked.size})`, () => {
      log.scan(a)
      return log.acked.size >= TOTAL ? true : undefined
    }, SETTLE_MS, 50).catch((e) => console.log(`crash (receiver): ${(e as Error).message}`))
    log.scan(a)
    const settledAfterMs = Date.now() - streamEnd

    await a.stop()
    await bobs.at(-1)!.stop()
    const bobRows = await historyOf(bob, "alice")
    const aliceRows = await historyOf(alice, "bob")

    // ack latency: from the line written to alice's console to her `delivered` event
    const textOf = new Map(aliceRows.map((r) => [r.id, r.text] as const))
    const latencies = [...log.acked].map(([id, at]) => at - (stream.writtenAt.get(textOf.get(id) ?? "") ?? NaN))
      .filter(Number.isFinite).sort((x, y) => x - y)
    const firstAckAfter = (t: number) => Math.min(...[...log.acked.values()].filter((at) => at >= t))
    // the backlog left by the last kill (sent to a dead bob until the stream ended), drained
    // by retries alone once he was back: the retry throughput
    const lastRestart = kills.at(-1)?.restartedAt ?? Infinity
    const drained = [...log.acked.values()].filter((at) => at >= lastRestart).sort((x, y) => x - y)
    const report = {
      retryDrain: { messages: drained.length, ms: drained.length > 0 ? drained.at(-1)! - lastRestart : 0 },
      kills: kills.map((k) => ({ atAck: k.atAck, downMs: k.downMs, firstAckAfterRestartMs: firstAckAfter(k.restartedAt) - k.restartedAt })),
      notDeliveredLines: log.notDelivered,
      streamMs: stream.ms,
      ackedDuringStream: ackedAtStreamEnd,
      settledAfterMs,
      ackLatencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) },
      messagesPerSecond: Math.round((TOTAL / (stream.ms + settledAfterMs)) * 1000),
      totalMs: Date.now() - t0
    }
    console.log(`crash (receiver killed): ${JSON.stringify(report)}`)

    expect(kills.length, "bob was not killed 4 times mid-stream").toBe(4)
    // the kills must have cost something, or the test did not test retries
    expect(log.notDelivered, "no send failed while bob was dead").toBeGreaterThan(0)
    checkExactlyOnce(log.acked, bobRows, aliceRows)
  }, 90_000)

  it("the sender killed with SIGKILL mid-stream (once with bob up, once with bob down) resends its pending messages after restart: each text exactly once", async () => {
    const t0 = Date.now()
    const { alice, bob } = await pair()
    const log = new AckLog()
    let b = startNode(bob)
    let a = startNode(alice)
    await Promise.all([
      a.waitForJson(isPeer("bob", "online"), 8_000),
      b.waitForJson(isPeer("alice", "online"), 8_000)
    ])

    /** Texts alice has stored (any state) and the ids still pending, read from her data dir while she is dead. */
    const aliceState = async () => {
      const rows = (await historyOf(alice, "bob")).filter((r) => r.direction === "sent")
      return { recorded: new Set(rows.map((r) => r.text)), pending: rows.filter((r) => r.state === "pending").map((r) => r.id) }
    }
    /** Restarts alice and waits until she sees bob (a message to a peer she does not know is refused, not kept). */
    const restartAlice = async () => {
      a = startNode(alice)
      await a.waitForJson(isPeer("bob", "online"), 8_000)
    }

    const phases: Array<Record<string, unknown>> = []
    const pendingAtKill: Array<string> = []

    // Phase 1: stream; at 300 acks kill -9 alice while bob is up (at most the message in
    // flight is pending: possibly stored by bob but not yet acked).
    let stopAt: (() => boolean) = () => {
      log.scan(a)
      return log.acked.size >= 300
    }
    let remaining = texts
    let s = await feed(a, remaining, () => stopAt())
    await kill9(a)
    log.scan(a)
    let state = await aliceState()
    pendingAtKill.push(...state.pending)
    phases.push({ phase: "alice killed, bob up", written: s.written, acked: log.acked.size, recorded: state.recorded.size, pending: state.pending.length })

    // Phase 2: restart alice, stream the texts she never stored; at 600 acks kill -9 bob,
    // keep streaming 1 s (those stay pending), then kill -9 alice while bob is still down.
    await restartAlice()
    remaining = texts.filter((t) => !state.recorded.has(t))
    let bobKilledAt: number | undefined
    stopAt = () => {
      log.scan(a)
      if (bobKilledAt === undefined && log.acked.size >= 600) {
        bobKilledAt = Date.now()
        b.child.kill("SIGKILL")
      }
      return bobKilledAt !== undefined && Date.now() - bobKilledAt >= 1_000
    }
    s = await feed(a, remaining, () => stopAt())
    await b.exited
    await kill9(a)
    log.scan(a)
    state = await aliceState()
    pendingAtKill.push(...state.pending)
    phases.push({ phase: "bob killed, then alice killed", written: s.written, acked: log.acked.size, recorded: state.recorded.size, pending: state.pending.length })
    expect(state.pending.length, "alice had too few pending messages when she was killed with bob down").toBeGreaterThanOrEqual(20)

    // Phase 3: bob back, alice back: her pending messages go at once (bob announces), and
    // she streams the rest.
    b = startNode(bob)
    await restartAlice()
    remaining = texts.filter((t) => !state.recorded.has(t))
    s = await feed(a, remaining)
    phases.push({ phase: "both restarted", written: s.written })
    const streamEnd = Date.now()

    await waitFor(`all ${TOTAL} acknowledged (have ${log.acked.size})`, () => {
      log.scan(a)
      return log.acked.size >= TOTAL ? true : undefined
    }, SETTLE_MS, 50).catch((e) => console.log(`crash (sender): ${(e as Error).message}`))
    log.scan(a)
    const settledAfterMs = Date.now() - streamEnd

    await a.stop()
    await b.stop()
    const bobRows = await historyOf(bob, "alice")
    const aliceRows = await historyOf(alice, "bob")
    console.log(`crash (sender killed): ${JSON.stringify({ phases, pendingAtKill: pendingAtKill.length, settledAfterMs, totalMs: Date.now() - t0 })}`)

    // every message pending when alice died is in bob's history, and alice saw it acked after her restart
    const bobIds = new Set(bobRows.map((r) => r.id))
    expect(pendingAtKill.filter((id) => !bobIds.has(id)), "messages pending at a kill never reached bob").toEqual([])
    expect(pendingAtKill.filter((id) => !log.acked.has(id)), "messages pending at a kill never acknowledged after restart").toEqual([])
    checkExactlyOnce(log.acked, bobRows, aliceRows)
  }, 90_000)
})
