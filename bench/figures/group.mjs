// group-fanout-p99: a message to a group of N nodes on one host (N = 16 in the full run),
// from the send to the last member's ack, p99; the baseline is the 1:1 ack latency (p99)
// measured in the same driver process, alternating with the group messages, to the same
// member nodes on the same disk (bench/drivers/group.ts says how).
//
// The group's N - 1 other members are `p2pchat start` processes, each on its own loopback
// address (127.0.0.11, 127.0.0.12, ...; ports chosen by the OS); the sender, a whole node
// in the driver process, is on 127.0.0.10. Each member announces every 1 s, so that it
// answers the sender's first announcement at once.
import { runJson, stop, waitForPorts } from "../lib/proc.mjs"

/** The sender's address; member i (from 1) is on 127.0.0.(SENDER_HOST + i). */
const SENDER_HOST = 10

/**
 * The step: `h` is the harness (bench/run.mjs): NODE, SIZE.group ({ nodes, count, runs,
 * warmup }), startNode, freshDir, bundleDriver, record.
 */
export const groupFanout = (h) => async () => {
  const { nodes, count, runs, warmup } = h.SIZE.group
  if (nodes < 2 || SENDER_HOST + nodes > 255) throw new Error(`a group of ${nodes} nodes does not fit in 127.0.0.x here`)
  const driver = await h.bundleDriver("group")
  const members = []
  try {
    for (let i = 1; i < nodes; i++) {
      const name = `member-${String(i).padStart(2, "0")}`
      const host = `127.0.0.${SENDER_HOST + i}`
      members.push({ name, host, child: await h.startNode(name, { json: false, bind: host, extra: ["--announce-every", "1s"] }) })
    }
    for (const m of members) m.udp = (await waitForPorts(m.child, { tcp: true, udp: true })).udp
    const r = await runJson(h.NODE, [
      driver, "--data-dir", h.freshDir("group-sender"), "--name", "sender", "--bind", `127.0.0.${SENDER_HOST}`,
      "--members", members.map((m) => `${m.name}@${m.host}:${m.udp}`).join(","),
      "--count", String(count), "--runs", String(runs), "--warmup", String(warmup), "--gap-ms", "5"
    ], { timeoutMs: 300_000 })
    if (r.error) throw new Error(`group send failed: ${r.error}`)
    const p50 = (xs) => xs.map((x) => x.toFixed(1)).join("/")
    h.record("group-fanout-p99", r.runs, r.baseline,
      `a group of ${nodes} nodes (the sender and ${r.members} member processes, each on its own 127.0.0.x), ` +
      `${count} group messages per run, each from the call to the last of ${r.members} acks, alternating with ${count} ` +
      `1:1 secure messages to the members in turn (the baseline: 1:1 ack p99 of the same run); p50 ms per run: ` +
      `group ${p50(r.p50)}, 1:1 ${p50(r.p50Baseline)}`)
  } finally {
    await Promise.all(members.map((m) => stop(m.child)))
  }
}
