/* ttc view: draws and filters what ttcompute/view_data.py computed. Every number shown is read from
 * the embedded JSON or is a sum of numbers in it (a group's weighted vote over the first n candidates);
 * nothing is scored or graded here. Libraries: Tabulator (the list), Chart.js (the plot), d3-hierarchy
 * (the tree's layout), d3-scale-chromatic (score colours); the tree itself is plain SVG. */
(function () {
  "use strict";

  const DATA = JSON.parse(document.getElementById("ttc-data").textContent);
  const META = DATA.meta;
  const PROBLEMS = DATA.problems;
  const STRATEGIES = DATA.strategies;
  const ENTRIES = DATA.entries.rows.map(function (values, id) {
    const e = { id: id };
    DATA.entries.columns.forEach(function (c, i) { e[c] = values[i]; });
    const p = PROBLEMS[e.problem];
    e.pid = p.id; e.question = p.question; e.gold = p.gold; e.bin = p.bin;
    e.strategyName = STRATEGIES[e.strategy];
    return e;
  });
  const SVG = "http://www.w3.org/2000/svg";
  const STATUS = { k: "kept", p: "pruned", f: "final" };

  // --- small helpers -----------------------------------------------------------------------------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function (kv) {
      if (kv[1] === null || kv[1] === undefined) return;
      if (kv[0] === "text") node.textContent = kv[1];
      else if (kv[0] === "on") Object.entries(kv[1]).forEach(function (h) { node.addEventListener(h[0], h[1]); });
      else node.setAttribute(kv[0], kv[1]);
    });
    (children || []).forEach(function (c) { node.append(c); });
    return node;
  }
  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    Object.entries(attrs || {}).forEach(function (kv) { if (kv[1] !== null && kv[1] !== undefined) node.setAttribute(kv[0], kv[1]); });
    return node;
  }
  function fmt(x, digits) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits === undefined ? 3 : digits); }
  function fmtBig(x) { return x === null || x === undefined ? "–" : Number(x).toExponential(2); }
  function mark(correct) { return correct ? "✓" : "✗"; }
  function scoreColor(s) { return s === null || s === undefined ? "#c8ccd1" : d3.interpolateRdYlBu(Math.max(0, Math.min(1, s))); }
  function inkOn(s) { return s !== null && s !== undefined && (s < 0.15 || s > 0.85) ? "#fff" : "#111"; }
  function answerText(a) { return a === null || a === undefined ? "(no answer)" : String(a); }

  // --- header --------------------------------------------------------------------------------------
  document.getElementById("summary").textContent =
    META.problems_total + " problems, " + META.rows_total + " search rows (" + META.search_dir + "). " +
    "Votes weigh each candidate by the " + META.aggregation + " of its step scores; a step scored below " +
    META.threshold + " is low. First wrong steps: " + META.truth_note +
    (META.truth ? " (" + META.judged_candidates + " of " + META.candidates + " final candidates judged)" : "") + "." +
    (META.select_dir ? " Selections agree with " + META.select_dir + "." : "") +
    (META.trees_recorded ? "" : " This search recorded no trees (written before ttcompute did): a tree shows its final candidates only.");
  if (META.left_out) {
    const warn = document.getElementById("left-out");
    warn.textContent = META.left_out + ".";
    warn.hidden = false;
  }
  document.querySelectorAll(".tab").forEach(function (button) {
    button.addEventListener("click", function () { showTab(button.dataset.tab); });
  });
  let chartDrawn = false;
  function showTab(name) {
    document.querySelectorAll(".tab").forEach(function (b) { b.setAttribute("aria-selected", String(b.dataset.tab === name)); });
    document.getElementById("tab-problems").hidden = name !== "problems";
    document.getElementById("tab-aggregates").hidden = name !== "aggregates";
    if (name === "aggregates" && !chartDrawn) { chartDrawn = true; drawAggregates(); }
  }

  // --- the problem list ------------------------------------------------------------------------------
  function fillSelect(select, values, allLabel) {
    select.append(el("option", { value: "", text: allLabel }));
    values.forEach(function (v) { select.append(el("option", { value: String(v), text: String(v) })); });
  }
  const unique = function (values) { return Array.from(new Set(values)); };
  fillSelect(document.getElementById("f-bin"),
    unique(PROBLEMS.map(function (p) { return p.bin; }).filter(function (b) { return b !== null; })).sort(function (a, b) { return a - b; }), "all bins");
  fillSelect(document.getElementById("f-strategy"), STRATEGIES, "all strategies");
  fillSelect(document.getElementById("f-budget"),
    unique(ENTRIES.map(function (e) { return e.budget; })).sort(function (a, b) { return a - b; }), "all budgets");

  const table = new Tabulator("#problem-table", {
    data: ENTRIES,
    index: "id",
    layout: "fitColumns",
    pagination: true,
    paginationSize: 25,
    paginationCounter: "rows",
    placeholder: "No problem matches these filters",
    columns: [
      { title: "Problem", field: "pid", width: 110 },
      { title: "Bin", field: "bin", width: 56, hozAlign: "right" },
      { title: "Strategy", field: "strategyName", width: 210 },
      { title: "Budget", field: "budget", width: 72, hozAlign: "right" },
      { title: "Question", field: "question", minWidth: 220, tooltip: true },
      { title: "Gold", field: "gold", width: 80 },
      { title: "Selected", field: "answer", width: 90, formatter: function (c) { return answerText(c.getValue()); } },
      { title: "", field: "correct", width: 40, hozAlign: "center", formatter: function (c) { return c.getValue() ? "✓" : "✗"; } },
      { title: "Votes", field: "votes", width: 76, hozAlign: "right", formatter: function (c) { const d = c.getData(); return d.votes + "/" + d.n; } },
      { title: "Weighted vote", field: "weight", width: 120, hozAlign: "right", formatter: function (c) { const d = c.getData(); return fmt(d.weight) + " / " + fmt(d.weight_total); } },
      { title: "Generations", field: "generations", width: 100, hozAlign: "right" },
      { title: "FLOPs", field: "total_flops", width: 96, hozAlign: "right", formatter: function (c) { return fmtBig(c.getValue()); } },
    ],
  });
  table.on("rowClick", function (event, row) { openEntry(row.getData()); });
  table.on("dataFiltered", function (filters, rows) {
    document.getElementById("f-count").textContent = rows.length + " of " + ENTRIES.length + " shown";
  });

  function currentFilter() {
    return {
      bin: document.getElementById("f-bin").value,
      strategy: document.getElementById("f-strategy").value,
      budget: document.getElementById("f-budget").value,
      correct: document.getElementById("f-correct").value,
      text: document.getElementById("f-search").value.trim().toLowerCase(),
    };
  }
  function entryMatches(e, f) {
    if (f.bin !== "" && String(e.bin) !== f.bin) return false;
    if (f.strategy !== "" && e.strategyName !== f.strategy) return false;
    if (f.budget !== "" && String(e.budget) !== f.budget) return false;
    if (f.correct === "right" && !e.correct) return false;
    if (f.correct === "wrong" && e.correct) return false;
    if (f.text) {
      const haystack = [e.pid, e.question, e.gold, answerText(e.answer)].join(" ").toLowerCase();
      if (haystack.indexOf(f.text) < 0) return false;
    }
    return true;
  }
  function applyFilters() {
    const f = currentFilter();
    table.setFilter(function (data) { return entryMatches(data, f); });
  }
  ["f-bin", "f-strategy", "f-budget", "f-correct"].forEach(function (id) { document.getElementById(id).addEventListener("change", applyFilters); });
  document.getElementById("f-search").addEventListener("input", applyFilters);
  document.getElementById("f-count").textContent = ENTRIES.length + " of " + ENTRIES.length + " shown";

  // --- one problem -----------------------------------------------------------------------------------
  const view = { problem: null, row: null, n: null, focus: null, entry: null };
  document.getElementById("d-close").addEventListener("click", function () { document.getElementById("detail").hidden = true; });
  document.getElementById("d-run").addEventListener("change", function (event) {
    openProblem(view.problem, Number(event.target.value), null, null, null);
  });
  document.getElementById("d-n").addEventListener("change", function (event) {
    view.n = Number(event.target.value);
    view.entry = null;
    render();
  });

  function openEntry(e) { openProblem(e.problem, e.row, e.n, e, null); }

  function budgetsOf(problem, row) {
    const stored = PROBLEMS[problem].rows[row];
    const values = unique(ENTRIES.filter(function (e) { return e.problem === problem && e.row === row; })
      .map(function (e) { return e.n; })).sort(function (a, b) { return a - b; });
    return values.length ? values : [stored.answer.length];
  }

  function openProblem(problem, row, n, entry, focus) {
    const p = PROBLEMS[problem];
    view.problem = problem; view.row = row; view.entry = entry; view.focus = focus;
    const budgets = budgetsOf(problem, row);
    view.n = n === null || n === undefined ? budgets[budgets.length - 1] : n;
    document.getElementById("d-id").textContent = p.id;
    document.getElementById("d-bin").textContent = p.bin === null ? "no bin" : "bin " + p.bin;
    document.getElementById("d-question").textContent = p.question;
    document.getElementById("d-gold").textContent = p.gold;
    const runs = document.getElementById("d-run");
    runs.replaceChildren();
    p.rows.forEach(function (r, i) { runs.append(el("option", { value: String(i), text: r.label })); });
    runs.value = String(row);
    const ns = document.getElementById("d-n");
    ns.replaceChildren();
    budgets.forEach(function (b) { ns.append(el("option", { value: String(b), text: "first " + b })); });
    ns.value = String(view.n);
    const detail = document.getElementById("detail");
    detail.hidden = false;
    render();
    detail.scrollIntoView({ block: "start" });
  }

  function picksOf(problem, row, n) {
    return ENTRIES.filter(function (e) { return e.problem === problem && e.row === row && e.n === n; });
  }

  function render() {
    const p = PROBLEMS[view.problem];
    const row = p.rows[view.row];
    const n = view.n;
    const picks = picksOf(view.problem, view.row, n);
    const cost = picks.length ? picks[0] : null;
    document.getElementById("d-cost").textContent = "Cost: " +
      (cost ? cost.generations + " generations, " + fmtBig(cost.total_flops) + " FLOPs" : "–") +
      (row.rounds ? " · " + row.rounds + " rounds" : "");
    const pickTable = document.getElementById("d-picks");
    pickTable.replaceChildren(el("tr", {}, ["strategy", "selected", "answer", "", "votes", "weighted vote", "flips right→wrong", "flips wrong→right"]
      .map(function (h) { return el("th", { text: h }); })));
    picks.forEach(function (e) {
      const focused = view.entry && view.entry.id === e.id;
      pickTable.append(el("tr", { class: focused ? "selected-group" : null, "data-strategy": e.strategyName }, [
        el("td", { text: e.strategyName }), el("td", { text: "#" + e.selected }), el("td", { text: answerText(e.answer) }),
        el("td", { class: e.correct ? "right" : "wrong", text: mark(e.correct) }), el("td", { text: e.votes + "/" + e.n }),
        el("td", { text: fmt(e.weight) + " / " + fmt(e.weight_total) }),
        el("td", { text: row.method === "revisions" ? String(e.right_to_wrong) : "–" }),
        el("td", { text: row.method === "revisions" ? String(e.wrong_to_right) : "–" }),
      ]));
    });
    drawLegend(row);
    const body = document.getElementById("d-body");
    body.replaceChildren();
    document.getElementById("d-node").hidden = true;
    if (row.tree) drawTree(body, row);
    else if (row.method === "revisions") drawChains(body, row, n);
    else drawGroups(body, row, n, picks);
  }

  function drawLegend(row) {
    const legend = document.getElementById("d-legend");
    const stops = [0, 0.25, 0.5, 0.75, 1].map(function (s) { return scoreColor(s) + " " + (s * 100) + "%"; }).join(",");
    const items = [
      el("span", {}, ["PRM score 0 ", el("span", { class: "gradient", style: "background:linear-gradient(90deg," + stops + ")" }), " 1"]),
      el("span", {}, [el("span", { class: "mark wrong-mark", text: "✗ first wrong" }), " first wrong step (" + (META.truth || "unknown") + ")"]),
      el("span", {}, [el("span", { class: "mark low-mark", text: "▼ first low" }), " first step scored below " + META.threshold]),
    ];
    if (row.tree) items.push(el("span", { text: "● kept · ◌ pruned (faded) · ■ final candidate" + (row.tree_source === "finals" ? " (final candidates only: no tree recorded)" : "") }));
    legend.replaceChildren(el("div", { class: "legend" }, items));
  }

  function stepChips(steps, scores, firstWrong, firstLow) {
    const chips = [];
    steps.forEach(function (text, i) {
      const s = i < scores.length ? scores[i] : null;
      const classes = ["step"];
      if (i === firstWrong) classes.push("first-wrong");
      if (i === firstLow) classes.push("first-low");
      chips.push(el("span", { class: classes.join(" "), "data-step": String(i), "data-score": s === null ? "" : String(s),
        style: "background:" + scoreColor(s) + ";color:" + inkOn(s), title: "step " + (i + 1) + " · score " + fmt(s), text: text.trim() }));
      if (i === firstWrong) chips.push(el("span", { class: "mark wrong-mark", text: "✗ first wrong" }));
      if (i === firstLow) chips.push(el("span", { class: "mark low-mark", text: "▼ first low" }));
    });
    return chips;
  }

  // Best-of-N: the first n candidates grouped by answer; a group's weight is the sum of its members'
  // vote scores (the weighted vote), the selected group outlined.
  function drawGroups(body, row, n, picks) {
    const selected = view.entry ? view.entry.selected
      : (picks.find(function (e) { return /weighted/.test(e.strategyName); }) || picks[0] || {}).selected;
    const groups = new Map();
    for (let c = 0; c < n; c++) {
      const g = row.group[c];
      if (!groups.has(g)) groups.set(g, { answer: row.answer[c], correct: row.correct[c], members: [], weight: 0 });
      const group = groups.get(g);
      group.members.push(c);
      group.weight += row.vote_score[c];
    }
    const ordered = Array.from(groups.entries()).sort(function (a, b) { return b[1].weight - a[1].weight || a[1].members[0] - b[1].members[0]; });
    body.append(el("p", { class: "note", text: ordered.length + (ordered.length === 1 ? " answer" : " answers") + " among the first " + n + " candidates; each group's weight is the sum of its candidates' scores (" + META.aggregation + " step score)." }));
    ordered.forEach(function (pair) {
      const g = pair[1];
      const isSelected = g.members.indexOf(selected) >= 0;
      const box = el("div", { class: "group" + (isSelected ? " selected-group" : ""), "data-group": String(pair[0]),
        "data-weight": String(g.weight), "data-votes": String(g.members.length) }, [
        el("h3", {}, [answerText(g.answer) + " ", el("span", { class: g.correct ? "right" : "wrong", text: mark(g.correct) }),
          " · " + g.members.length + " of " + n + " votes · weight " + fmt(g.weight) + (isSelected ? " · selected" : "")]),
      ]);
      g.members.forEach(function (c) {
        const focused = view.focus && view.focus.kind === "candidate" && view.focus.index === c;
        box.append(el("div", { class: "candidate" + (focused ? " selected-group" : ""), "data-candidate": String(c) },
          [el("span", { class: "cid", text: "#" + c + " · " + fmt(row.vote_score[c]) })]
            .concat(stepChips(row.steps[c], row.scores[c], row.first_wrong[c], row.first_low[c]))));
      });
      body.append(box);
    });
  }

  // Revision chains: attempts in order, the verifier's score of each, and the flips between them.
  function drawChains(body, row, n) {
    const chains = row.chains.filter(function (chain) { return chain.every(function (i) { return i < n; }); });
    let rightToWrong = 0, wrongToRight = 0;
    const box = el("div", { class: "chains" });
    chains.forEach(function (chain, k) {
      const line = el("div", { class: "chain", "data-chain": String(k) }, [el("span", { class: "cid", text: "chain " + k })]);
      const steps = el("div", { class: "chain-steps" });
      chain.forEach(function (i, t) {
        if (t > 0) {
          const before = row.correct[chain[t - 1]], after = row.correct[i];
          let kind = "same", text = "→";
          if (before && !after) { kind = "right-to-wrong"; text = "✓→✗"; rightToWrong++; }
          if (!before && after) { kind = "wrong-to-right"; text = "✗→✓"; wrongToRight++; }
          line.append(el("span", { class: "flip " + kind, text: text }));
        }
        const focused = view.focus && view.focus.kind === "candidate" && view.focus.index === i;
        line.append(el("button", { type: "button", class: "attempt " + (row.correct[i] ? "is-right" : "is-wrong") + (focused ? " selected-group" : ""),
          "data-candidate": String(i), title: "attempt " + t + " of chain " + k,
          text: "#" + t + " " + answerText(row.answer[i]) + " " + mark(row.correct[i]) + " · " + fmt(row.vote_score[i]),
          on: { click: function () {
            steps.replaceChildren(el("div", { class: "candidate" }, [el("span", { class: "cid", text: "attempt " + t })]
              .concat(stepChips(row.steps[i], row.scores[i], row.first_wrong[i], row.first_low[i]))));
          } } }));
      });
      box.append(line, steps);
    });
    body.append(el("p", { id: "d-flips", "data-right-to-wrong": String(rightToWrong), "data-wrong-to-right": String(wrongToRight),
      text: chains.length + " chains of the first " + n + " attempts · flips right→wrong: " + rightToWrong + " · wrong→right: " + wrongToRight }));
    body.append(box);
  }

  // A tree search: every beam of every round (d3-hierarchy lays it out; rounds run left to right).
  function drawTree(body, row) {
    const t = row.tree;
    const count = t.parent.length;
    const items = [{ id: "root", parent: null }];
    for (let i = 0; i < count; i++) items.push({ id: "n" + i, parent: t.parent[i] < 0 ? "root" : "n" + t.parent[i], index: i });
    const root = d3.stratify().id(function (d) { return d.id; }).parentId(function (d) { return d.parent; })(items);
    const rowGap = 18, roundGap = 150;
    d3.tree().nodeSize([rowGap, roundGap])(root);
    let top = Infinity, bottom = -Infinity;
    root.each(function (d) { top = Math.min(top, d.x); bottom = Math.max(bottom, d.x); });
    const width = root.height * roundGap + 320, height = bottom - top + 2 * rowGap;
    const svg = svgEl("svg", { id: "tree", width: width, height: height, viewBox: "-40 " + (top - rowGap) + " " + width + " " + height,
      "data-nodes": String(count), "data-source": row.tree_source });
    const links = svgEl("g", { class: "links" }), nodes = svgEl("g", { class: "nodes" });
    svg.append(links, nodes);
    const wrong = new Set(t.first_wrong), low = new Set(t.first_low);
    root.descendants().forEach(function (d) {
      if (d.parent) {
        const mid = (d.parent.y + d.y) / 2;
        const status = STATUS[t.status[d.data.index]];
        links.append(svgEl("path", { class: "link" + (status !== "pruned" ? " kept-link" : ""),
          d: "M" + d.parent.y + "," + d.parent.x + "C" + mid + "," + d.parent.x + " " + mid + "," + d.x + " " + d.y + "," + d.x }));
      }
      if (!d.parent) {
        const g = svgEl("g", { class: "root", transform: "translate(" + d.y + "," + d.x + ")" });
        g.append(svgEl("circle", { r: 4, fill: "#333" }));
        const label = svgEl("text", { x: -8, y: 4, "text-anchor": "end" });
        label.textContent = "Q";
        g.append(label);
        nodes.append(g);
        return;
      }
      const i = d.data.index;
      const status = STATUS[t.status[i]];
      const score = t.score[i];
      const g = svgEl("g", { class: "node " + status, transform: "translate(" + d.y + "," + d.x + ")", "data-node": String(i),
        "data-score": score === null ? "" : String(score), "data-status": status, "data-round": String(t.round[i]) });
      const shape = status === "final"
        ? svgEl("rect", { class: "shape", x: -5, y: -5, width: 10, height: 10, fill: scoreColor(score) })
        : svgEl("circle", { class: "shape", r: 5, fill: scoreColor(score) });
      g.append(shape);
      if (wrong.has(i)) g.append(svgEl("circle", { class: "ring", r: 8.5 }));
      if (low.has(i)) g.append(svgEl("path", { class: "low", d: "M-4,-14 L4,-14 L0,-8 Z" }));
      const title = svgEl("title");
      title.textContent = "round " + t.round[i] + " · " + status + " · score " + fmt(score) +
        (t.rank ? " · rank " + fmt(t.rank[i]) : "") + "\n" + t.text[i].trim();
      g.append(title);
      const label = svgEl("text", { x: 9, y: 4 });
      if (status === "final") {
        const c = t.candidate[i];
        label.textContent = answerText(row.answer[c]) + " " + mark(row.correct[c]);
        label.setAttribute("class", row.correct[c] ? "right" : "wrong");
      } else {
        label.textContent = t.text[i].trim().slice(0, 18);
        label.setAttribute("fill", "#555");
      }
      g.append(label);
      g.addEventListener("click", function () { showNode(row, i); });
      nodes.append(g);
    });
    body.append(el("div", { class: "tree-wrap" }, [svg]));
    const finals = el("table", { class: "small", id: "d-finals" }, [el("tr", {}, ["candidate", "answer", "", "vote score", "steps"].map(function (h) { return el("th", { text: h }); }))]);
    row.answer.forEach(function (a, c) {
      finals.append(el("tr", { "data-candidate": String(c) }, [
        el("td", {}, [el("a", { href: "#", class: "problem-link", text: "#" + c, on: { click: function (ev) { ev.preventDefault(); if (row.node[c] !== null) showNode(row, row.node[c]); } } })]),
        el("td", { text: answerText(a) }), el("td", { class: row.correct[c] ? "right" : "wrong", text: mark(row.correct[c]) }),
        el("td", { text: fmt(row.vote_score[c]) }), el("td", { text: String(row.scores[c].length) }),
      ]));
    });
    body.append(el("h3", { text: "Final candidates" }), finals);
    if (view.focus) {
      const node = view.focus.kind === "node" ? view.focus.index : row.node[view.focus.index];
      if (node !== null && node !== undefined) showNode(row, node);
    }
  }

  function pathOf(t, i) {
    const path = [];
    for (let j = i; j >= 0; j = t.parent[j]) path.unshift(j);
    return path;
  }

  function showNode(row, i) {
    const t = row.tree;
    const path = pathOf(t, i);
    document.querySelectorAll("svg#tree .node.highlight").forEach(function (n) { n.classList.remove("highlight"); });
    path.forEach(function (j) {
      const node = document.querySelector('svg#tree .node[data-node="' + j + '"]');
      if (node) node.classList.add("highlight");
    });
    const wrong = new Set(t.first_wrong), low = new Set(t.first_low);
    const panel = document.getElementById("d-node");
    const status = STATUS[t.status[i]];
    const steps = path.map(function (j) {
      return el("div", { class: "candidate" }, [
        el("span", { class: "cid", text: "round " + t.round[j] + " · " + STATUS[t.status[j]] }),
        el("span", { class: "step" + (wrong.has(j) ? " first-wrong" : "") + (low.has(j) ? " first-low" : ""),
          style: "background:" + scoreColor(t.score[j]) + ";color:" + inkOn(t.score[j]), text: t.text[j].trim() }),
        el("span", { text: " score " + fmt(t.score[j]) + (t.rank ? " · rank " + fmt(t.rank[j]) : "") }),
        wrong.has(j) ? el("span", { class: "mark wrong-mark", text: "✗ first wrong" }) : "",
        low.has(j) ? el("span", { class: "mark low-mark", text: "▼ first low" }) : "",
      ]);
    });
    const head = status === "final"
      ? "Final candidate #" + t.candidate[i] + ": " + answerText(row.answer[t.candidate[i]]) + " " + mark(row.correct[t.candidate[i]])
      : "A " + status + " beam after round " + t.round[i];
    panel.replaceChildren(el("h3", { text: head }));
    steps.forEach(function (s) { panel.append(s); });
    panel.hidden = false;
  }

  // --- aggregates --------------------------------------------------------------------------------------
  let chart = null;
  function drawAggregates() {
    const byStep = DATA.aggregates.by_step;
    const methods = Object.keys(byStep);
    const select = document.getElementById("a-method");
    methods.forEach(function (m) { select.append(el("option", { value: m, text: m })); });
    document.getElementById("a-note").textContent = META.truth
      ? "Right: before the first wrong step; wrong: from it on (ttc eval-prm's convention). Each distinct prefix of a problem counts once, over every problem of the search (" + META.truth_note + ")."
      : "No step truth: " + META.truth_note + ".";
    select.addEventListener("change", function () { drawByStep(select.value); });
    if (methods.length) drawByStep(methods[0]);
    drawOverrated();
  }

  function drawByStep(method) {
    const s = DATA.aggregates.by_step[method];
    const labels = s.index.map(function (i) { return "step " + (i + 1); });
    const datasets = [
      { label: "right steps", data: s.right_mean, borderColor: "#2c7bb6", backgroundColor: "#2c7bb6", spanGaps: true },
      { label: "wrong steps", data: s.wrong_mean, borderColor: "#d7191c", backgroundColor: "#d7191c", spanGaps: true },
    ];
    if (chart) chart.destroy();
    chart = new Chart(document.getElementById("a-chart"), {
      type: "line",
      data: { labels: labels, datasets: datasets },
      options: {
        animation: false, maintainAspectRatio: false,
        scales: { y: { title: { display: true, text: "mean PRM score" } } },
        plugins: { tooltip: { callbacks: { afterLabel: function (ctx) {
          const n = ctx.datasetIndex === 0 ? s.right_n : s.wrong_n;
          return n[ctx.dataIndex] + " steps";
        } } } },
      },
    });
    const tableEl = document.getElementById("a-table");
    tableEl.replaceChildren(el("tr", {}, ["step", "right: mean score", "right: steps", "wrong: mean score", "wrong: steps"].map(function (h) { return el("th", { text: h }); })));
    s.index.forEach(function (i, k) {
      tableEl.append(el("tr", { "data-index": String(i) }, [el("td", { text: String(i + 1) }), el("td", { text: fmt(s.right_mean[k]) }),
        el("td", { text: String(s.right_n[k]) }), el("td", { text: fmt(s.wrong_mean[k]) }), el("td", { text: String(s.wrong_n[k]) })]));
    });
  }

  function drawOverrated() {
    const rows = DATA.aggregates.overrated;
    document.getElementById("o-note").textContent = META.truth
      ? "First wrong steps the PRM scored at or above " + META.threshold + ", highest first (" + rows.length + " listed)."
      : "No step truth: " + META.truth_note + ".";
    const tableEl = document.getElementById("o-table");
    tableEl.replaceChildren(el("tr", {}, ["#", "score", "step", "step index", "problem", "methods", "rows"].map(function (h) { return el("th", { text: h }); })));
    rows.forEach(function (r, k) {
      const link = r.problem === null
        ? el("span", { text: r.problem_id + " (not in this page)" })
        : el("a", { href: "#", class: "problem-link", text: r.problem_id, on: { click: function (ev) {
          ev.preventDefault();
          showTab("problems");
          openProblem(r.problem, r.where[1], null, null, { kind: r.where[2], index: r.where[3] });
        } } });
      tableEl.append(el("tr", { "data-rank": String(k) }, [el("td", { text: String(k + 1) }), el("td", { text: fmt(r.score) }),
        el("td", {}, [el("span", { class: "step", style: "background:" + scoreColor(r.score) + ";color:" + inkOn(r.score), text: r.step })]),
        el("td", { text: String(r.index + 1) }), el("td", {}, [link]), el("td", { text: r.methods.join(", ") }), el("td", { text: String(r.rows) })]));
    });
  }

  window.ttcView = { data: DATA, table: table, openProblem: openProblem, showTab: showTab };
})();
