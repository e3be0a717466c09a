/**
 * A real (virtual) LAN: three hosts in network namespaces on one bridge, one node each on
 * the default ports, no --target and no --bind, so they can only find each other by
 * broadcast on 10.77.7.255. Needs root and iproute2 (CI runs as root).
 *
 * The tests run in order on the same three nodes: discovery; then every host chats with
 * every other in every mode (plain through the console's `chat` + `unsecure`, classic
 * through `p2pchat send --classic` beside the node, secure through the console's `msg`);
 * then a host is cut off (its cable pulled: the bridge end of its veth down), another
 * sends it a secure message, which stays pending, and it gets it exactly once when its
 * cable is back and it is heard again: once before the sender sees it away, once after.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type CliProcess, cleanup, ensureBuilt, type HistoryRow, type Mode, sleep, tempDir, waitFor } from "../support/cli.ts"
import { createLan, deleteLeftovers, type Lan, netnsUnavailable } from "./netns.ts"

/** `history --json` (every peer) of host i, run inside that host. */
const historyOf = async (i: number): Promise<Array<HistoryRow>> => {
  const r = await lan!.hosts[i]!.runCli(["history", "--json", "--data-dir", dataDirs[i]!])
  expect(r.code, `history on ${names[i]}: ${r.stderr}`).toBe(0)
  return JSON.parse(r.stdout) as Array<HistoryRow>
}

/** The `message` events node i printed for `text`. */
const shown = (i: number, text: string) => nodes[i]!.json().filter((e) => e.event === "message" && e.text === text)

const notDelivered = (i: number) => nodes[i]!.stdout.filter((l) => l.startsWith('{"event":"error","message":"not delivered'))

/** When host `of` last heard `whom`, by `peers --json` (the node's saved registry). */
const lastSeen = async (of: number, whom: number): Promise<number | undefined> => {
  const r = await lan!.hosts[of]!.runCli(["peers", "--json", "--data-dir", dataDirs[of]!])
  if (r.code !== 0) return undefined
  const row = (JSON.parse(r.stdout) as Array<{ username: string; lastSeen: string }>).find((p) => p.username === names[whom])
  return row === undefined ? undefined : Date.parse(row.lastSeen)
}

const unavailable = netnsUnavailable()
if (unavailable !== undefined) console.warn(`skipping LAN tests: ${unavailable}`)

const HOSTS = 3
let lan: Lan | undefined
/** The nodes the first test starts (and the later ones use), their names and data dirs. */
let nodes: Array<CliProcess> = []
let names: Array<string> = []
let dataDirs: Array<string> = []

beforeAll(async () => {
  if (unavailable !== undefined) return
  deleteLeftovers()
  await ensureBuilt()
  lan = createLan(HOSTS, { subnet: "10.77.7" })
}, 120_000)

afterAll(async () => {
  await cleanup()
  lan?.teardown()
})

describe("LAN in network namespaces", () => {
  it.skipIf(unavailable !== undefined)(
    "three hosts on a bridge find each other by broadcast on the default ports, without --target or --bind",
    async () => {
      const hosts = lan!.hosts
      // The premise: each host has its own eth0 on the subnet, with its broadcast address.
      for (const h of hosts) {
        const r = h.exec(["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
        expect(r.status, r.stderr).toBe(0)
        expect(r.stdout).toContain(`inet ${h.address}/24 brd ${lan!.subnet}.255`)
      }
      names = hosts.map((h) => `h${h.index}`)
      dataDirs = hosts.map((h) => tempDir(`p2pchat-lan-h${h.index}-`))
      nodes = hosts.map((h, i) =>
        h.spawnCli(["start", "--name", names[i]!, "--data-dir", dataDirs[i]!, "--json", "--announce-every", "1s"], {
          stdin: "pipe"
        })
      )
      const lastStarted = Math.max(...nodes.map((n) => n.startedAt))

      // Each node's event stream shows the two others online, at their own addresses.
      for (const [i, node] of nodes.entries()) {
        for (const [j, other] of hosts.entries()) {
          if (i === j) continue
          const seen = await node.waitForJson((e) => e.event === "peer" && e.username === names[j] && e.status === "online", 6_000)
          expect(seen.value).toMatchObject({ address: other.address, port: 6001, proto: "p2pchat/1" })
          expect(seen.at - lastStarted, `${names[i]} saw ${names[j]} late`).toBeLessThan(4_000)
        }
      }

      // And `peers --json` in each host lists exactly the two others, online.
      for (const [i, host] of hosts.entries()) {
        const expected = hosts.filter((_, j) => j !== i).map((h) => ({ username: `h${h.index}`, address: h.address }))
        const rows = await waitFor(`peers of ${names[i]}`, async () => {
          const r = await host.runCli(["peers", "--json", "--data-dir", dataDirs[i]!])
          expect(r.code, r.stderr).toBe(0)
          const list = JSON.parse(r.stdout) as Array<{ username: string; address: string; status: string; proto: string; port: number }>
          return list.length === expected.length ? list : undefined
        }, 3_000, 100)
        expect(rows.map((r) => ({ username: r.username, address: r.address }))).toEqual(expected)
        for (const r of rows) expect(r).toMatchObject({ status: "online", proto: "p2pchat/1", port: 6001 })
      }

      for (const node of nodes) {
        expect(node.running()).toBe(true)
        expect(node.stderr.filter((l) => /\[(warn|error|fatal)/i.test(l))).toEqual([])
      }
    },
    30_000
  )

  it.skipIf(unavailable !== undefined)(
    "every host chats with every other: plain (console chat + unsecure), classic (send --classic), secure (msg); each message once, histories match",
    async () => {
      const hosts = lan!.hosts
      const sends: Array<{ from: number; to: number; text: string; mode: Mode }> = []
      const others = (i: number) => hosts.map((_, j) => j).filter((j) => j !== i)

      // Plain and secure through each node's console; each console works through its lines in order.
      for (const [i, node] of nodes.entries()) {
        const lines: Array<string> = []
        for (const j of others(i)) {
          const text = `plain ${names[i]} to ${names[j]}`
          lines.push(`chat ${names[j]}`, "unsecure", text, "")
          sends.push({ from: i, to: j, text, mode: "plain" })
        }
        for (const j of others(i)) {
          const text = `secure ${names[i]} to ${names[j]}`
          lines.push(`msg ${names[j]} ${text}`)
          sends.push({ from: i, to: j, text, mode: "noise" })
        }
        node.input(...lines)
      }
      // Classic from separate `send` processes beside the nodes, all at once.
      const classic = hosts.flatMap((h, i) =>
        others(i).map(async (j) => {
          const text = `classic ${names[i]} to ${names[j]}`
          sends.push({ from: i, to: j, text, mode: "classic-3des" })
          const r = await h.runCli(["send", names[j]!, text, "--classic", "--name", names[i]!, "--data-dir", dataDirs[i]!], 20_000)
          expect(r.code, `send --classic ${names[i]} -> ${names[j]}: ${r.stdout} ${r.stderr}`).toBe(0)
          expect(r.stdout).toContain(`delivered to ${names[j]}`)
        })
      )
      await Promise.all(classic)

      // Each message arrives at its receiver, from its sender, in its mode.
      for (const m of sends) {
        const { value } = await nodes[m.to]!.waitForJson((e) => e.event === "message" && e.text === m.text, 15_000)
        expect(value, `${m.text} on ${names[m.to]}`).toMatchObject({ from: names[m.from], mode: m.mode })
      }
      // Every send is confirmed: all sent messages delivered in each history.
      const histories = await waitFor("every sent message delivered", async () => {
        const all = await Promise.all(hosts.map((_, i) => historyOf(i)))
        return all.every((rows) => rows.filter((r) => r.direction === "sent").length === 2 * 3 &&
            rows.every((r) => r.state === (r.direction === "sent" ? "delivered" : "received")))
          ? all
          : undefined
      }, 10_000, 200)
      for (const [i] of nodes.entries()) expect(notDelivered(i), `${names[i]} was told of a failure`).toEqual([])

      // Once each: a little later, still exactly one event per message.
      await sleep(500)
      for (const m of sends) expect(shown(m.to, m.text), `'${m.text}' on ${names[m.to]}`).toHaveLength(1)

      // Each pair's histories mirror each other: same ids, texts and modes per direction, in order where one process sent them.
      for (const [i] of hosts.entries()) {
        for (const j of others(i)) {
          const mine = histories[i]!.filter((r) => r.peer === names[j])
          const theirs = histories[j]!.filter((r) => r.peer === names[i])
          const expected = sends.filter((m) => m.from === i && m.to === j)
          const sent = mine.filter((r) => r.direction === "sent")
          const received = theirs.filter((r) => r.direction === "received")
          expect(sent.map((r) => ({ text: r.text, mode: r.mode, state: r.state })).sort(byText)).toEqual(
            expected.map((m) => ({ text: m.text, mode: m.mode, state: "delivered" })).sort(byText)
          )
          expect(received.map((r) => ({ id: r.id, text: r.text, mode: r.mode, state: r.state })).sort(byText)).toEqual(
            sent.map((r) => ({ id: r.id, text: r.text, mode: r.mode, state: "received" })).sort(byText)
          )
          // In the same order where one process sent them one after another (the console waits
          // for each ack); a classic `send` process runs beside it, so its message may arrive
          // before or after the console's secure one (which first opens a Noise session).
          const byConsole = (rows: ReadonlyArray<{ id: string; mode: string }>) =>
            rows.filter((r) => r.mode !== "classic-3des").map((r) => r.id)
          expect(byConsole(received)).toEqual(byConsole(sent))
        }
        expect(new Set(histories[i]!.map((r) => r.id)).size, `${names[i]}: one row per id`).toBe(histories[i]!.length)
        expect(histories[i]!).toHaveLength(4 * 3)
      }
    },
    40_000
  )

  /**
   * Pulls `cut`'s cable, has `sender` send it a secure message with the console's `msg`, and
   * checks it stays pending and the sender is told. `holdDown` runs before the cable goes back.
   * Then checks the message is delivered exactly once within `deliverWithinMs` of `cut` being
   * heard again by the sender.
   */
  const cutOff = async (sender: number, cut: number, text: string, holdDown: () => Promise<void>, deliverWithinMs: number) => {
    const hosts = lan!.hosts
    const node = nodes[sender]!
    const from = node.stdout.length
    lan!.setLink(hosts[cut]!, false)
    let upAt: number
    try {
      node.input(`msg ${names[cut]} ${text}`)
      // The sender is told it did not go through, and that it is kept.
      const told = await node.waitForLine((l) => l.startsWith('{"event":"error","message":"not delivered'), { from, timeoutMs: 12_000 })
      expect(told.line).toContain(names[cut])
      expect(told.line).toMatch(/pending|kept/)
      const row = (await historyOf(sender)).filter((r) => r.text === text)
      expect(row).toMatchObject([{ peer: names[cut], direction: "sent", mode: "noise", state: "pending" }])
      await holdDown()
      expect(shown(cut, text), `${names[cut]} got '${text}' while cut off`).toHaveLength(0)
    } finally {
      lan!.setLink(hosts[cut]!, true)
      upAt = Date.now()
    }
    // Heard again: the sender's saved registry has an announcement from after the cable went back.
    await waitFor(`${names[sender]} to hear ${names[cut]} again`, async () => {
      const seen = await lastSeen(sender, cut)
      return seen !== undefined && seen >= upAt - 50 ? seen : undefined
    }, 6_000, 200)
    const heardAt = Date.now()
    const id = (await historyOf(sender)).find((r) => r.text === text)!.id
    await waitFor(`'${text}' delivered to ${names[cut]} within ${deliverWithinMs} ms of it being heard again`, async () => {
      const r = (await historyOf(sender)).find((x) => x.id === id)
      return r?.state === "delivered" ? true : undefined
    }, deliverWithinMs, 200).catch(async (e: Error) => {
      const state = (await historyOf(sender)).find((x) => x.id === id)?.state
      const where = `${names[sender]}'s history says ${state}; ${names[cut]} shows it ${shown(cut, text).length} time(s)`
      throw new Error(`${e.message} (${Date.now() - heardAt} ms after heard again; ${where})`)
    })
    await nodes[sender]!.waitForJson((e) => e.event === "delivered" && e.id === id, 3_000)
    // Exactly once, also after another announcement or two.
    await sleep(1_500)
    expect(shown(cut, text), `'${text}' on ${names[cut]}`).toHaveLength(1)
    expect(shown(cut, text)[0]).toMatchObject({ id, from: names[sender], mode: "noise" })
    const received = (await historyOf(cut)).filter((r) => r.id === id)
    expect(received).toMatchObject([{ peer: names[sender], direction: "received", text, mode: "noise", state: "received" }])
    const sent = (await historyOf(sender)).filter((r) => r.id === id)
    expect(sent).toMatchObject([{ peer: names[cut], direction: "sent", text, mode: "noise", state: "delivered" }])
  }

  it.skipIf(unavailable !== undefined)(
    "a host cut off briefly (still online for the sender) gets its pending secure message once, soon after it is heard again",
    async () => {
      // h1 -> h3; the cable goes back as soon as h1 has been told, well before h1 would see h3 away (10 s).
      await cutOff(0, 2, "secure to h3 while its cable is out", async () => {}, 5_000)
    },
    30_000
  )

  it.skipIf(unavailable !== undefined)(
    "a host cut off until the sender sees it away gets its pending secure message once, soon after it is heard again",
    async () => {
      // h3 -> h2; the cable stays out until h3 shows h2 away (10 s without an announcement).
      await cutOff(2, 1, "secure to h2 while it is away", async () => {
        await nodes[2]!.waitForJson((e) => e.event === "peer" && e.username === names[1] && e.status === "away", 12_000)
      }, 5_000)
    },
    40_000
  )
})

const byText = (a: { text: string }, b: { text: string }) => a.text.localeCompare(b.text)
