/**
 * The page (Preact): the conversations with unread counts and the peers' status and key
 * marks, the open conversation with its messages and transfers, the composer, the verify
 * dialog. Every string from a peer goes into the page as text (JSX children and attributes,
 * which Preact sets as text): there is no HTML built from strings anywhere.
 */
import { useEffect, useRef, useState } from "preact/hooks"
import type { Recipient, Transfer, Verify } from "./api.ts"
import type { Actions } from "./main.ts"
import { ALL, type Conversation, conversations, keyMark, type KeyMark, keyOf, type Msg, type State } from "./store.ts"
import { TransferList } from "./files.tsx"

const two = (n: number) => String(n).padStart(2, "0")
const clock = (d: Date) => `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`
const day = (d: Date) => `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`
const sameDay = (a: Date, b: Date) => day(a) === day(b)

/** Local time of arrival, and the sender's time beside it when it is over a minute off. */
export const when = (m: Pick<Msg, "at" | "sentAt">): { readonly shown: string; readonly sent: string | undefined } => {
  const at = new Date(m.at)
  const shown = sameDay(at, new Date()) ? clock(at) : `${day(at)} ${clock(at)}`
  if (m.sentAt === undefined) return { shown, sent: undefined }
  const sent = new Date(m.sentAt)
  if (Number.isNaN(sent.getTime()) || Math.abs(sent.getTime() - at.getTime()) <= 60_000) return { shown, sent: undefined }
  return { shown, sent: sameDay(sent, at) ? clock(sent) : `${day(sent)} ${clock(sent)}` }
}

const MARKS: Record<KeyMark, string> = {
  verified: "verified",
  unverified: "key not verified",
  changed: "KEY CHANGED",
  none: "no key"
}

const modeNote = (m: Msg): string | undefined =>
  m.mode === "plain" ? "unencrypted" : m.mode === "classic-3des" ? "classic, not secure" : m.verified === false ? "key not verified" : undefined

/** `delivered to bob, carol; pending for dave`, as the console says it. */
export const recipientsNote = (recipients: ReadonlyArray<Recipient>): string =>
  ([["delivered", "delivered to"], ["sent", "sent to"], ["pending", "pending for"], ["failed", "not sent to"], ["skipped", "skipped"]] as const)
    .map(([state, words]) => [words, recipients.filter((r) => r.state === state).map((r) => r.peer)] as const)
    .filter(([, peers]) => peers.length > 0)
    .map(([words, peers]) => `${words} ${peers.join(", ")}`)
    .join("; ")

const deliveryNote = (m: Msg): string => {
  if (m.recipients !== undefined && m.state !== "sending") return recipientsNote(m.recipients) || "no recipients"
  switch (m.state) {
    case "sending":
      return "sending…"
    case "sent":
      return "sent (classic peers do not confirm)"
    case "failed":
      return `not sent: ${m.reason ?? "failed"}`
    default:
      return m.state
  }
}

const Message = ({ m, me }: { readonly m: Msg; readonly me: string }) => {
  const t = when(m)
  const note = modeNote(m)
  return (
    <li class={`msg ${m.direction}`} data-id={m.id} data-state={m.state}>
      <div class="meta">
        <span class="from">{m.direction === "sent" ? me : m.peer}</span>
        <time dateTime={m.at}>{t.shown}</time>
        {t.sent !== undefined && <span class="sent-at">sent {t.sent}</span>}
        {note !== undefined && <span class="warn">{note}</span>}
      </div>
      <div class="text">{m.text}</div>
      {m.direction === "sent" && <div class="delivery" aria-label="delivery">{deliveryNote(m)}</div>}
    </li>
  )
}

const statusOf = (s: State, c: Conversation): string => {
  if (c.kind !== "peer") return ""
  return s.peers.get(c.key)?.status ?? "offline"
}

const ConversationItem = ({ s, c, actions }: { readonly s: State; readonly c: Conversation; readonly actions: Actions }) => {
  const unread = s.unread.get(c.key) ?? 0
  const status = statusOf(s, c)
  const mark = c.kind === "peer" ? keyMark(s, c.label) : undefined
  return (
    <li>
      <button
        type="button"
        class={`conv ${s.current === c.key ? "current" : ""}`}
        aria-current={s.current === c.key ? "true" : undefined}
        data-conv={c.key}
        onClick={() => actions.open(c.key)}
      >
        {status !== "" && <span class={`dot ${status}`} aria-hidden="true" />}
        <span class="name">{c.label}</span>
        {status !== "" && <span class="sr-only">{`, ${status}`}</span>}
        {mark !== undefined && mark !== "none" && <span class={`mark ${mark}`}>{MARKS[mark]}</span>}
        {unread > 0 && <span class="unread" aria-label={`${unread} unread`}>{unread}</span>}
      </button>
    </li>
  )
}

const Composer = ({ s, c, actions }: { readonly s: State; readonly c: Conversation; readonly actions: Actions }) => {
  const [text, setText] = useState("")
  const input = useRef<HTMLTextAreaElement>(null)
  useEffect(() => input.current?.focus(), [c.key])
  const submit = () => {
    if (text.trim() === "") return
    void actions.send(text)
    setText("")
  }
  return (
    <form class="composer" onSubmit={(e) => { e.preventDefault(); submit() }}>
      <label for="composer-text" class="sr-only">{`Message to ${c.label}`}</label>
      <textarea
        id="composer-text"
        ref={input}
        rows={2}
        value={text}
        placeholder={`Message ${c.label} (Enter sends, Shift+Enter for a new line)`}
        onInput={(e) => setText(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
            e.preventDefault()
            submit()
          }
        }}
      />
      <button type="submit">Send</button>
      {c.kind !== "all" && s.files && <FilePicker actions={actions} />}
    </form>
  )
}

const FilePicker = ({ actions }: { readonly actions: Actions }) => (
  <label class="button file-picker">
    Send a file…
    <input
      type="file"
      multiple
      class="sr-only"
      onChange={(e) => {
        const files = [...(e.currentTarget.files ?? [])]
        e.currentTarget.value = ""
        if (files.length > 0) void actions.sendFiles(files)
      }}
    />
  </label>
)

const VerifyDialog = ({ user, actions, close }: { readonly user: string; readonly actions: Actions; readonly close: () => void }) => {
  const [v, setV] = useState<Verify | undefined>(undefined)
  const [typed, setTyped] = useState("")
  const [error, setError] = useState<string | undefined>(undefined)
  const dialog = useRef<HTMLDialogElement>(null)
  useEffect(() => {
    dialog.current?.showModal()
    actions.verify(user).then(setV, (e: Error) => setError(e.message))
  }, [user])
  const trust = async () => {
    try {
      await actions.trust(user, typed)
      setV(await actions.verify(user))
      setError(undefined)
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e))
    }
  }
  return (
    <dialog ref={dialog} class="verify" aria-labelledby="verify-title" onClose={close}>
      <h2 id="verify-title">{`Verify ${user}`}</h2>
      <p>Compare these fingerprints aloud with {user}, in person or on a call you trust.</p>
      {v === undefined ? <p>Loading…</p> : (
        <dl>
          <dt>Your fingerprint</dt>
          <dd class="fp" data-fp="mine">{v.fingerprint}</dd>
          {v.pinned !== null && <dt>{`${user}'s pinned key`}</dt>}
          {v.pinned !== null && <dd class="fp" data-fp="pinned">{v.pinned} <em>{v.verified ? "(verified by you)" : "(NOT verified yet)"}</em></dd>}
          {v.announced !== null && v.announced !== v.pinned && <dt>{`${user} announces`}</dt>}
          {v.announced !== null && v.announced !== v.pinned && (
            <dd class="fp" data-fp="announced">{v.announced} {v.pinned !== null && <em class="warn">(DIFFERENT from the pinned key)</em>}</dd>
          )}
          {v.presented !== null && <dt>{`${user} presented (in a refused session)`}</dt>}
          {v.presented !== null && <dd class="fp" data-fp="presented">{v.presented}</dd>}
          {v.pinned === null && v.announced === null && <dd>{`No key known for ${user} yet.`}</dd>}
        </dl>
      )}
      <form method="dialog" onSubmit={(e) => { e.preventDefault(); void trust() }}>
        <label for="trust-fp">{`The fingerprint ${user} read to you (60 digits, or at least the first 20)`}</label>
        <input id="trust-fp" value={typed} autoComplete="off" onInput={(e) => setTyped(e.currentTarget.value)} />
        {error !== undefined && <p role="alert" class="warn">{error}</p>}
        <div class="buttons">
          <button type="submit" disabled={typed.trim() === ""}>{`Trust ${user}'s key`}</button>
          <button type="button" onClick={() => dialog.current?.close()}>Close</button>
        </div>
      </form>
    </dialog>
  )
}

const Open = ({ s, c, actions }: { readonly s: State; readonly c: Conversation; readonly actions: Actions }) => {
  const [verifying, setVerifying] = useState(false)
  const [dragging, setDragging] = useState(false)
  const list = useRef<HTMLDivElement>(null)
  const messages = s.messages.get(c.key)
  useEffect(() => {
    if (list.current !== null) list.current.scrollTop = list.current.scrollHeight
  }, [messages?.length, c.key])
  const peer = c.kind === "peer" ? s.peers.get(c.key) : undefined
  const mark = c.kind === "peer" ? keyMark(s, c.label) : undefined
  const transfers: Array<Transfer> = [...s.transfers.values()].filter((t) => keyOf(t.peer) === c.key || t.peer === c.key)
  const files = c.kind !== "all" && s.files
  return (
    <section
      class={`open ${dragging ? "dragging" : ""}`}
      aria-label={`Conversation with ${c.label}`}
      onDragOver={(e) => { if (files) { e.preventDefault(); setDragging(true) } }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => {
        if (!files) return
        e.preventDefault()
        setDragging(false)
        const dropped = [...(e.dataTransfer?.files ?? [])]
        if (dropped.length > 0) void actions.sendFiles(dropped)
      }}
    >
      <header class="conv-head">
        <button type="button" class="back" onClick={() => actions.open("")} aria-label="Back to the conversations">←</button>
        <h2>{c.kind === "all" ? "Everyone (broadcast)" : c.label}</h2>
        {c.kind === "peer" && <span class={`status ${peer?.status ?? "offline"}`}>{peer?.status ?? "offline"}</span>}
        {mark !== undefined && <span class={`mark ${mark}`}>{MARKS[mark]}</span>}
        {c.kind === "peer" && <button type="button" onClick={() => setVerifying(true)}>Verify…</button>}
      </header>
      {transfers.length > 0 && <TransferList transfers={transfers} actions={actions} />}
      <div class="messages" ref={list} role="log" aria-live="polite" aria-label="Messages">
        <ol>
        {messages === undefined ? <li class="empty">Loading…</li> : messages.length === 0 ? <li class="empty">No messages yet.</li> : (
          messages.map((m) => <Message key={`${m.direction}-${m.id}`} m={m} me={s.me?.username ?? "me"} />)
        )}
        </ol>
      </div>
      <Composer s={s} c={c} actions={actions} />
      {verifying && <VerifyDialog user={c.label} actions={actions} close={() => setVerifying(false)} />}
    </section>
  )
}

export const App = ({ state: s, actions }: { readonly state: State; readonly actions: Actions }) => {
  const list = conversations(s)
  const current = list.find((c) => c.key === s.current)
  return (
    <div class={`app ${current !== undefined ? "has-current" : ""}`}>
      <header class="top">
        <h1>p2pchat{s.me?.username ? <span class="me">{` – ${s.me.username}`}</span> : null}</h1>
        {!s.connected && <span class="offline" role="status">not connected to the node</span>}
        <button type="button" class="away" aria-pressed={s.away} onClick={() => void actions.setAway(!s.away)}>
          {s.away ? "You are away: I'm back" : "Set me away"}
        </button>
      </header>
      {s.notice !== undefined && (
        <div class="notice" role="alert">
          <span>{s.notice}</span>
          <button type="button" onClick={actions.dismiss} aria-label="Dismiss">×</button>
        </div>
      )}
      <nav aria-label="Conversations">
        <ul>{list.map((c) => <ConversationItem key={c.key} s={s} c={c} actions={actions} />)}</ul>
      </nav>
      <main>
        {current !== undefined ? <Open key={current.key} s={s} c={current} actions={actions} /> : (
          <p class="pick">{list.length > 1 ? "Pick a conversation." : "Nobody else is here yet."}</p>
        )}
      </main>
    </div>
  )
}

export { ALL }
