/**
 * The web UI in a real browser: Debian's Chromium driven by playwright-core, one page per
 * node, against two real nodes on loopback (support.ts). Alice picks bob, types and sends;
 * bob's page shows it; alice's shows it delivered; the verify dialog shows the same
 * fingerprints on both sides, and trust marks the key verified; a text that is HTML stays
 * text and runs nothing; away and back show on the other side; a file dropped in alice's
 * page arrives in bob's downloads with its progress shown. Screenshots go to
 * .tmp/web-screenshots/ (and docs/web-ui.png, the README's, when it is missing or
 * UPDATE_SCREENSHOTS=1).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { Browser, Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { browserSkip, ensureBundle, launch, ROOT, startPair, waitFor, type WebNode } from "./support.ts"

const skip = browserSkip()
if (skip !== undefined) console.warn(skip)

const SHOTS = path.join(ROOT, ".tmp", "web-screenshots")
const DOC_SHOT = path.join(ROOT, "docs", "web-ui.png")

let pair: Awaited<ReturnType<typeof startPair>>
let browser: Browser
let alice: Page
let bob: Page
const dialogs: Array<string> = []
const errors: Array<string> = []

const openPage = async (node: WebNode, colorScheme: "light" | "dark") => {
  const context = await browser.newContext({ colorScheme, viewport: { width: 1100, height: 720 } })
  const page = await context.newPage()
  page.on("dialog", (d) => {
    dialogs.push(d.message())
    void d.dismiss()
  })
  page.on("pageerror", (e) => void errors.push(e.message))
  await page.goto(node.web.url)
  return page
}

const conv = (page: Page, key: string) => page.locator(`nav [data-conv="${key}"]`)

beforeAll(async () => {
  if (skip !== undefined) return
  fs.mkdirSync(SHOTS, { recursive: true })
  await ensureBundle()
  pair = await startPair()
  browser = await launch()
  alice = await openPage(pair.alice, "light")
  bob = await openPage(pair.bob, "dark")
}, 30_000)

afterAll(async () => {
  await browser?.close()
  await pair?.close()
})

describe.skipIf(skip !== undefined)("the web UI in Chromium", () => {
  it("loads the page without the token in its URL, and lists the other node as online", async () => {
    expect(new URL(alice.url()).search).toBe("")
    await conv(alice, "bob").waitFor({ timeout: 10_000 })
    await conv(bob, "alice").waitFor({ timeout: 10_000 })
    await alice.locator('nav [data-conv="bob"] .dot.online').waitFor({ timeout: 10_000 })
    expect(await alice.title()).toContain("alice")
  })

  it("alice picks bob, types and sends with Enter; bob's page shows it (unread first); alice sees it delivered", async () => {
    await conv(alice, "bob").click()
    const box = alice.getByLabel("Message to bob")
    await box.fill("hello bob")
    await box.press("Enter")
    await waitFor("the composer emptied", async () => (await box.inputValue()) === "")
    await conv(bob, "alice").locator(".unread").waitFor({ timeout: 10_000 })
    expect(await conv(bob, "alice").locator(".unread").textContent()).toBe("1")
    await alice.locator('.msg.sent[data-state="delivered"]', { hasText: "hello bob" }).waitFor({ timeout: 10_000 })
    await conv(bob, "alice").click()
    await bob.locator(".msg.received .text", { hasText: "hello bob" }).waitFor({ timeout: 5000 })
    expect(await conv(bob, "alice").locator(".unread").count()).toBe(0)
    // Shift+Enter is a new line; Enter sends the two lines as one message
    await box.type("line one")
    await box.press("Shift+Enter")
    await box.type("line two")
    await box.press("Enter")
    const two = bob.locator(".msg.received .text", { hasText: "line one" })
    await two.waitFor({ timeout: 5000 })
    expect(await two.textContent()).toBe("line one\nline two")
  })

  it("shows a text that is HTML as text, and runs nothing", async () => {
    const evil = "<img src=x onerror=alert(1)>"
    const box = alice.getByLabel("Message to bob")
    await box.fill(evil)
    await box.press("Enter")
    const shown = bob.locator(".msg.received .text", { hasText: "onerror" })
    await shown.waitFor({ timeout: 5000 })
    expect(await shown.textContent()).toBe(evil)
    expect(await bob.locator(".messages img").count()).toBe(0)
    expect(await alice.locator(".messages img").count()).toBe(0)
    await alice.locator('.msg.sent[data-state="delivered"]', { hasText: "onerror" }).waitFor({ timeout: 5000 })
    await new Promise((r) => setTimeout(r, 300))
    expect(dialogs).toEqual([])
    expect(errors).toEqual([])
  })

  it("the verify dialog shows the same fingerprints on both sides; trust with the compared one marks bob verified", async () => {
    await alice.getByRole("button", { name: "Verify…" }).click()
    const aliceMine = await alice.locator('dialog [data-fp="mine"]').textContent()
    await alice.locator('dialog [data-fp="pinned"]').waitFor({ timeout: 5000 })
    const aliceSeesBob = (await alice.locator('dialog [data-fp="pinned"]').textContent())!.split(" (")[0]!.trim()
    await bob.getByRole("button", { name: "Verify…" }).click()
    const bobMine = await bob.locator('dialog [data-fp="mine"]').textContent()
    await bob.locator('dialog [data-fp="pinned"]').waitFor({ timeout: 5000 })
    const bobSeesAlice = (await bob.locator('dialog [data-fp="pinned"]').textContent())!.split(" (")[0]!.trim()
    expect(aliceMine).toBe(pair.alice.node.fingerprint)
    expect(bobMine).toBe(pair.bob.node.fingerprint)
    expect(aliceSeesBob).toBe(bobMine)
    expect(bobSeesAlice).toBe(aliceMine)
    await alice.screenshot({ path: path.join(SHOTS, "verify-alice.png") })
    // a wrong fingerprint is refused, the one bob read out is taken
    await alice.getByLabel(/The fingerprint bob read to you/).fill("12345 67890 12345 67890")
    await alice.getByRole("button", { name: "Trust bob's key" }).click()
    await alice.locator("dialog [role=alert]").waitFor({ timeout: 5000 })
    await alice.getByLabel(/The fingerprint bob read to you/).fill(bobMine!)
    await alice.getByRole("button", { name: "Trust bob's key" }).click()
    await alice.locator("dialog", { hasText: "(verified by you)" }).waitFor({ timeout: 5000 })
    await alice.getByRole("button", { name: "Close" }).click()
    await bob.getByRole("button", { name: "Close" }).click()
    await alice.locator('nav [data-conv="bob"] .mark.verified').waitFor({ timeout: 5000 })
  })

  it("away and back show on the other side", async () => {
    await alice.getByRole("button", { name: "Set me away" }).click()
    await bob.locator('nav [data-conv="alice"] .dot.away').waitFor({ timeout: 10_000 })
    expect(await bob.locator(".conv-head .status").textContent()).toBe("away")
    await alice.getByRole("button", { name: /I'm back/ }).click()
    await bob.locator('nav [data-conv="alice"] .dot.online').waitFor({ timeout: 10_000 })
  })

  it("works in a narrow window: the list, then the conversation with a way back", async () => {
    await bob.setViewportSize({ width: 380, height: 700 })
    await bob.locator(".conv-head .back").waitFor({ state: "visible", timeout: 5000 })
    expect(await bob.locator("nav").isVisible()).toBe(false)
    await bob.screenshot({ path: path.join(SHOTS, "narrow-dark-bob.png") })
    await bob.locator(".conv-head .back").click()
    await bob.locator("nav").waitFor({ state: "visible", timeout: 5000 })
    await bob.setViewportSize({ width: 1100, height: 720 })
  })

  it("a file dropped in alice's page arrives in bob's downloads; both pages show the transfer, bob's progress bar full", async () => {
    const size = 3 * 1024 * 1024 + 123
    await conv(alice, "bob").click()
    await conv(bob, "alice").click()
    // the drop as a browser makes it: a DataTransfer holding a File, on the open conversation
    const dropped = await alice.evaluateHandle(`(() => {
      const bytes = new Uint8Array(${size})
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 11)) & 255
      const dt = new DataTransfer()
      dt.items.add(new File([bytes], "<img src=x onerror=alert(2)>.bin"))
      return dt
    })()`)
    await alice.dispatchEvent("section.open", "drop", { dataTransfer: dropped })
    const offer = bob.locator('.transfer[data-state="offered"]')
    await offer.waitFor({ timeout: 15_000 })
    expect(await offer.locator(".name").textContent()).toContain("<img src=x onerror=alert(2)>.bin")
    expect(await bob.locator(".transfers img").count()).toBe(0)
    await alice.locator(".transfer").first().waitFor({ timeout: 5000 })
    await offer.getByRole("button", { name: "Accept" }).click()
    const done = bob.locator('.transfer[data-state="done"]')
    await done.waitFor({ timeout: 20_000 })
    expect(await done.locator("progress").getAttribute("value")).toBe(String(size))
    const doneEvent = pair.bob.node.events.find((e) => e.event === "file" && e.state === "done")
    const saved = doneEvent?.event === "file" ? doneEvent.path ?? "" : ""
    // the engine saves it under a name safe for the file system (its choice), in bob's downloads
    expect(saved.startsWith(pair.bob.node.dataDir)).toBe(true)
    expect(path.basename(saved)).toMatch(/img src=x onerror=alert\(2\).*\.bin$/)
    expect(await done.textContent()).toContain(saved)
    const bytes = fs.readFileSync(saved)
    expect(bytes.length).toBe(size)
    expect(bytes[5000]).toBe((5000 * 7 + (5000 >> 11)) & 255)
    await bob.screenshot({ path: path.join(SHOTS, "file-bob-dark.png") })
  })

  it("saves screenshots", async () => {
    await waitFor("alice's page settled", async () => (await alice.locator(".msg").count()) >= 3)
    await alice.screenshot({ path: path.join(SHOTS, "alice.png") })
    await conv(bob, "alice").click()
    await bob.screenshot({ path: path.join(SHOTS, "bob-dark.png") })
    if (!fs.existsSync(DOC_SHOT) || process.env["UPDATE_SCREENSHOTS"] === "1") fs.copyFileSync(path.join(SHOTS, "alice.png"), DOC_SHOT)
    expect(fs.statSync(path.join(SHOTS, "alice.png")).size).toBeGreaterThan(10_000)
  })
})
