// web-roundtrip-p99 and web-first-load: two `p2pchat start --web` processes (alice on
// 127.0.0.31, bob on 127.0.0.32, each serving its web UI on its own address), one page of
// each in Debian's Chromium driven by playwright-core (test/web/ runs the same setup).
//
// web-roundtrip-p99: alice's page sends (the composer's Enter, dispatched in the page), bob's
// page shows the message (a MutationObserver in bob's page sees its text in the list); both
// times are read from the pages' clocks (performance.timeOrigin + performance.now(), one
// browser process, one machine clock). Messages go one at a time; the p99 of SIZE.web.messages.
//
// web-first-load: a fresh browser context opens alice's address (with its token) until the
// peer list shows bob; the median of SIZE.web.loads loads, each its own run.
import { performance } from "node:perf_hooks"
import { spawnTracked, stop, waitFor, waitForPorts } from "../lib/proc.mjs"

const CHROMIUM = process.env.P2PCHAT_CHROMIUM ?? "/usr/bin/chromium"

const p99 = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]
}

/** A `start --web` node; resolves with the process and its web UI's address (printed once). */
const startWebNode = async (h, name, host, extra) => {
  let url
  const child = spawnTracked(h.NODE, [
    h.CLI, "start", "--web", "--web-port", "0", "--web-bind", host, "--name", name, "--bind", host,
    "--udp-port", "0", "--tcp-port", "0", "--announce-every", "1s", "--data-dir", h.freshDir(`web-${name}`),
    "--log-level", "warning", ...extra
  ], {
    onLine: (line) => {
      if (line.startsWith("web UI: ")) url = line.slice("web UI: ".length)
    }
  })
  child.url = await waitFor(`${name}'s web UI`, () => {
    if (child.exitCode !== null) throw new Error(`${name} exited: ${child.stderrText.slice(0, 500)}`)
    return url
  }, 15_000)
  return child
}

/** In bob's page: the time each message text first shows in the list, by text. */
const WATCH = `(() => {
  window.__seen = new Map()
  const look = () => {
    const now = performance.timeOrigin + performance.now()
    for (const el of document.querySelectorAll(".msg.received .text")) {
      const t = el.textContent
      if (!window.__seen.has(t)) window.__seen.set(t, now)
    }
  }
  new MutationObserver(look).observe(document.body, { childList: true, subtree: true, characterData: true })
})()`

/** In alice's page: types TEXT into the composer and presses Enter; the time of the Enter. */
const SEND = `(text) => {
  const box = document.getElementById("composer-text")
  Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value").set.call(box, text)
  box.dispatchEvent(new Event("input", { bubbles: true }))
  return new Promise((resolve) => setTimeout(() => {
    const at = performance.timeOrigin + performance.now()
    box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true }))
    resolve(at)
  }, 0))
}`

/** The step: `h` is the harness (bench/run.mjs): NODE, CLI, SIZE.web ({ messages, loads }), freshDir, record. */
export const webFigures = (h) => async () => {
  const fs = await import("node:fs")
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no ${CHROMIUM} (apt-get install -y chromium)`)
  const { chromium } = await import("playwright-core")
  const { messages, loads } = h.SIZE.web
  const nodes = []
  let browser
  try {
    const bob = await startWebNode(h, "bob", "127.0.0.32", [])
    nodes.push(bob)
    const bobUdp = (await waitForPorts(bob, { udp: true })).udp
    const alice = await startWebNode(h, "alice", "127.0.0.31", ["--target", `127.0.0.32:${bobUdp}`])
    nodes.push(alice)
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"], headless: true })
    // first load: a fresh context each time (no cookie, nothing cached), to the peer list showing bob
    const firstLoads = []
    for (let i = 0; i < loads + 1; i++) {
      const context = await browser.newContext()
      const page = await context.newPage()
      const t0 = performance.now()
      await page.goto(alice.url)
      await page.locator('nav [data-conv="bob"]').waitFor({ timeout: 15_000 })
      // the first is a warm-up (the browser's own start, bob not heard yet)
      if (i > 0) firstLoads.push(performance.now() - t0)
      await context.close()
    }
    h.record("web-first-load", firstLoads, undefined,
      `a fresh browser context opens alice's address with its token (303 to the page, the cookie set) until bob shows in the ` +
      `peer list; ${loads} loads after a warm-up, each a run`)
    const pageOf = async (node, other) => {
      const page = await (await browser.newContext()).newPage()
      await page.goto(node.url)
      await page.locator(`nav [data-conv="${other}"]`).click({ timeout: 15_000 })
      await page.locator("#composer-text").waitFor()
      return page
    }
    const [a, b] = [await pageOf(alice, "bob"), await pageOf(bob, "alice")]
    await b.evaluate(WATCH)
    const times = []
    for (let i = 0; i < messages + 5; i++) {
      const text = `bench ${i}`
      const sentAt = await a.evaluate(`(${SEND})(${JSON.stringify(text)})`)
      const shownAt = await waitFor(`message ${i} in bob's page`, () => b.evaluate(`window.__seen.get(${JSON.stringify(text)})`), 10_000)
      if (i >= 5) times.push(shownAt - sentAt) // 5 warm-up messages open the secure session first
    }
    h.record("web-roundtrip-p99", [p99(times)], undefined,
      `${messages} messages one at a time after 5 warm-up, from the Enter in alice's page to the text in bob's page ` +
      `(secure, stored and acknowledged on the way, shown through bob's live stream); p50 ${times.sort((x, y) => x - y)[Math.floor(times.length / 2)].toFixed(1)} ms`)
  } finally {
    await browser?.close()
    await Promise.all(nodes.map((n) => stop(n)))
  }
}
