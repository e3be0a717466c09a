/**
 * Discovery on a real (virtual) LAN: three hosts in network namespaces on one bridge, one
 * node each on the default ports, no --target and no --bind, so they can only find each
 * other by broadcast on 10.77.7.255. Needs root and iproute2 (CI runs as root).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { cleanup, ensureBuilt, tempDir, waitFor } from "../support/cli.ts"
import { createLan, deleteLeftovers, type Lan, netnsUnavailable } from "./netns.ts"

const unavailable = netnsUnavailable()
if (unavailable !== undefined) console.warn(`skipping LAN tests: ${unavailable}`)

const HOSTS = 3
let lan: Lan | undefined

beforeAll(async () => {
  if (unavailable !== undefined) return
  deleteLeftovers()
  await ensureBuilt()
  lan = createLan(HOSTS, { subnet: "10.77.7" })
}, 120_000)

afterEach(async () => {
  await cleanup()
})

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
      const names = hosts.map((h) => `h${h.index}`)
      const dataDirs = hosts.map((h) => tempDir(`p2pchat-lan-h${h.index}-`))
      const nodes = hosts.map((h, i) =>
        h.spawnCli(["start", "--name", names[i]!, "--data-dir", dataDirs[i]!, "--json", "--announce-every", "1s"])
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
})
