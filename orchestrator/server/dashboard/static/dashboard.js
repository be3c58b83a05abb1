// The incident page's live parts: refresh the steps every 2 s, count deadline clocks down.
"use strict";

function relative(seconds) {
  const span = Math.abs(seconds);
  if (span < 60) return "now";
  const h = Math.floor(span / 3600), m = Math.floor((span % 3600) / 60);
  const text = h ? `${h} h ${m} min` : `${m} min`;
  return seconds > 0 ? `in ${text}` : `overdue by ${text}`;
}

function tick() {
  for (const clock of document.querySelectorAll("time.clock")) {
    const due = Date.parse(clock.getAttribute("datetime"));
    if (!Number.isNaN(due)) clock.textContent = relative((due - Date.now()) / 1000);
  }
}

async function refresh(live) {
  try {
    const answer = await fetch(live.dataset.src, { credentials: "same-origin" });
    if (answer.ok) {
      live.innerHTML = await answer.text();  // server-rendered, autoescaped
      tick();
    }
  } catch (error) {
    // offline for a moment: keep what is shown, try again on the next round
  }
}

document.addEventListener("DOMContentLoaded", () => {
  tick();
  setInterval(tick, 1000);
  const live = document.getElementById("live");
  if (live) setInterval(() => refresh(live), 2000);
});
