/**
 * File transfers in the open conversation: each offer with Accept and Decline, and each
 * transfer's progress (the `file` events of the live stream).
 */
import type { Transfer } from "./api.ts"
import type { Actions } from "./main.ts"

/** Bytes in decimal units, as the console says them (`3.1 MB`). */
const size = (n: number): string =>
  n < 1000 ? `${n} B` : n < 1e6 ? `${(n / 1e3).toFixed(1)} KB` : n < 1e9 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e9).toFixed(2)} GB`

const Item = ({ t, actions }: { readonly t: Transfer; readonly actions: Actions }) => {
  const what = t.count > 1 ? `${t.name} (${t.count} files, ${size(t.size)})` : `${t.name} (${size(t.size)})`
  return (
    <li class={`transfer ${t.state}`} data-transfer={t.id} data-state={t.state}>
      <span class="name">{t.direction === "out" ? `to ${t.peer}: ${what}` : t.state === "offered" ? `${t.peer} offers ${what}` : `from ${t.peer}: ${what}`}</span>
      <progress max={Math.max(t.size, 1)} value={t.bytes} aria-label={`${t.name}: ${size(t.bytes)} of ${size(t.size)}`} />
      <span class="state">
        {t.state}
        {t.rate !== undefined && t.state === "receiving" ? `, ${size(t.rate)}/s` : ""}
        {t.reason !== undefined ? `: ${t.reason}` : ""}
        {t.state === "done" && t.path !== undefined ? ` – saved as ${t.path}` : ""}
      </span>
      {t.direction === "in" && t.state === "offered" && (
        <span class="buttons">
          <button type="button" onClick={() => void actions.accept(t.id)}>Accept</button>
          <button type="button" onClick={() => void actions.decline(t.id)}>Decline</button>
        </span>
      )}
    </li>
  )
}

export const TransferList = ({ transfers, actions }: { readonly transfers: ReadonlyArray<Transfer>; readonly actions: Actions }) => (
  <ul class="transfers" aria-label="Files">
    {transfers.map((t) => <Item key={t.id} t={t} actions={actions} />)}
  </ul>
)
