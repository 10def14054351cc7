// The local agent desk: poll the stack for handoffs, show them, open transcripts, release conversations.
// Every value is put in the page as text (textContent), never as markup: summaries quote customers.
"use strict";

const token = document.querySelector('meta[name="release-token"]').content;
const pollMs = Number(document.querySelector('meta[name="poll-ms"]').content) || 1000;
const STATUS = {
  with_person: "With a person",
  call_with_person: "Call with a person",
  released: "Released to the AI",
  expired: "Expired",
};
let shown = "";
const notes = new Map(); // handoff id -> what the last release said

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function card(row) {
  const heading = "h-" + row.id;
  const when = new Date(row.at * 1000);
  const facts = element("dl", {},
    element("dt", {}, "Reason"), element("dd", { class: "reason" }, row.reason || "none given"),
    element("dt", {}, "Summary"), element("dd", { class: "summary" }, row.summary || "none"),
  );
  const actions = element("p", { class: "actions" });
  if (row.transcriptUrl) {
    actions.append(element("a", { class: "transcript", href: row.transcriptUrl, target: "_blank", rel: "noopener noreferrer" }, "Open transcript"));
  }
  if (row.release) {
    const button = element("button", { type: "button", class: "release" }, "Release to the AI");
    button.disabled = row.status !== "with_person";
    button.addEventListener("click", () => release(row, button));
    actions.append(button);
  }
  if (notes.has(row.id)) actions.append(element("span", { class: "result", role: "status" }, notes.get(row.id)));
  return element("li", { class: "handoff " + row.channel, "data-id": row.id, "data-conversation": row.conversationId },
    element("article", { "aria-labelledby": heading },
      element("header", {},
        element("h3", { id: heading },
          element("span", { class: "channel " + row.channel }, row.channel === "voice" ? "CALL" : "SMS"),
          element("span", { class: "customer" }, row.customer || "unknown")),
        element("span", { class: "status " + row.status }, STATUS[row.status] || row.status),
        element("time", { datetime: when.toISOString() }, when.toLocaleTimeString())),
      facts,
      actions));
}

function render(rows) {
  const signature = JSON.stringify([rows, [...notes]]);
  if (signature === shown) return; // unchanged: keep focus and selection where they are
  shown = signature;
  document.getElementById("handoffs").replaceChildren(...rows.map(card));
  document.getElementById("count").textContent = String(rows.length);
  document.getElementById("empty").hidden = rows.length > 0;
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const answer = await fetch("/desk/handoffs", { cache: "no-store" });
    if (!answer.ok) throw new Error("the stack answered " + answer.status);
    render((await answer.json()).handoffs);
    error.hidden = true;
  } catch (problem) {
    error.textContent = "Cannot reach the local stack: " + problem.message;
    error.hidden = false;
  }
}

async function release(row, button) {
  button.disabled = true;
  let note;
  try {
    const answer = await fetch("/handoff/release", {
      method: "POST",
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify(row.release),
    });
    const body = await answer.json().catch(() => ({}));
    note = answer.ok ? "Released: the AI answers this customer again." : "Not released (" + answer.status + "): " + (body.error || "");
  } catch (problem) {
    note = "Not released: " + problem.message;
  }
  notes.set(row.id, note);
  await refresh();
}

refresh();
setInterval(refresh, pollMs);
