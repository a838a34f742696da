/*
 * The meter form: a filter builder that writes the filter JSON into the hidden `filter` field, and
 * a live preview that POSTs the draft meter to the server after each change. The server decides
 * everything (validation and matching); this file only edits the tree and shows the answers.
 * Numbers are kept as the text the staff member typed and written into the JSON unchanged, so a
 * value like 0.1 reaches the server exactly. A field's errors show once the staff member has
 * touched it (or the form was submitted), never on a fresh form nobody has typed in yet.
 */
(function () {
  "use strict";

  var MAX_DEPTH = 3; // the filter language allows groups nested three levels deep
  var DEBOUNCE_MS = 300;
  var NUMBER = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;
  var OPERATORS = {
    string: [
      ["equals", "equals"],
      ["not_equals", "does not equal"],
      ["contains", "contains"],
      ["does_not_contain", "does not contain"],
    ],
    number: [
      ["equals", "="],
      ["not_equals", "≠"],
      ["greater_than", ">"],
      ["greater_than_or_equals", "≥"],
      ["less_than", "<"],
      ["less_than_or_equals", "≤"],
    ],
    boolean: [
      ["equals", "is"],
      ["not_equals", "is not"],
    ],
  };
  var TYPES = [
    ["string", "text"],
    ["number", "number"],
    ["boolean", "true/false"],
  ];

  function readJSON(id, fallback) {
    var node = document.getElementById(id);
    if (!node) return fallback;
    var value = JSON.parse(node.textContent);
    return value === null ? fallback : value;
  }

  function h(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") node.textContent = attrs[name];
      else if (name === "hidden") node.hidden = attrs[name];
      else node.setAttribute(name, attrs[name]);
    });
    (children || []).forEach(function (child) {
      if (child) node.appendChild(child);
    });
    return node;
  }

  function select(className, options, current, label) {
    var node = h("select", { class: className, "aria-label": label });
    options.forEach(function (option) {
      var item = h("option", { value: option[0], text: option[1] });
      if (option[0] === current) item.selected = true;
      node.appendChild(item);
    });
    return node;
  }

  function operatorsFor(type) {
    return OPERATORS[type] || OPERATORS.string;
  }

  function newCondition() {
    return { key: "", type: "string", operator: "equals", value: "" };
  }

  // --- serialization: the exact JSON the server validates ------------------------------------

  function conditionJSON(condition) {
    var value;
    if (condition.type === "boolean") {
      value = condition.value === "false" ? "false" : "true";
    } else if (condition.type === "number") {
      var text = condition.value.trim();
      // Not a number: send null, so the server names this field; the builder explains why.
      value = NUMBER.test(text) ? text : "null";
    } else {
      value = JSON.stringify(condition.value);
    }
    return (
      '{"key":' + JSON.stringify(condition.key) +
      ',"operator":' + JSON.stringify(condition.operator) +
      ',"value":' + value + "}"
    );
  }

  function groupJSON(group) {
    var clauses = group.clauses.map(function (clause) {
      return clause.clauses ? groupJSON(clause) : conditionJSON(clause);
    });
    return (
      '{"conjunction":' + JSON.stringify(group.conjunction) +
      ',"clauses":[' + clauses.join(",") + "]}"
    );
  }

  // --- the builder -------------------------------------------------------------------------

  function Builder(container, hidden, onChange, submitted) {
    this.container = container;
    this.hidden = hidden;
    this.onChange = onChange;
    this.submitted = submitted;
    this.keyTypes = {};
    var state = readJSON("filter-builder-state", null);
    this.state = state && Array.isArray(state.clauses) ? state : { conjunction: "and", clauses: [] };
    this.render();
    this.hidden.value = this.serialize();
    this.showErrors(readJSON("filter-builder-errors", []));
    // The builder shows the server's filter errors on their conditions; the plain list is for
    // browsers without JavaScript.
    document.querySelectorAll(".filter-errors").forEach(function (list) {
      list.hidden = true;
    });
  }

  Builder.prototype.serialize = function () {
    return this.state.clauses.length ? groupJSON(this.state) : "";
  };

  Builder.prototype.changed = function (rerender) {
    if (rerender) this.render();
    this.hidden.value = this.serialize();
    this.showErrors([]);
    this.onChange();
  };

  Builder.prototype.render = function () {
    this.container.textContent = "";
    this.container.appendChild(this.renderGroup(this.state, "filter", 1, null));
  };

  Builder.prototype.renderGroup = function (group, path, level, parent) {
    var self = this;
    var conjunction = select(
      "fb-conjunction",
      [
        ["and", "ALL (and)"],
        ["or", "ANY (or)"],
      ],
      group.conjunction,
      "Conjunction"
    );
    conjunction.addEventListener("change", function () {
      group.conjunction = conjunction.value;
      self.changed(false);
    });
    var header = h("div", { class: "fb-group-header" }, [
      h("span", { text: level === 1 ? "Count events that match " : "Match " }),
      conjunction,
      h("span", { text: " of these conditions" }),
    ]);
    if (parent) {
      var remove = h("button", { type: "button", class: "fb-remove-group", text: "Remove group" });
      remove.addEventListener("click", function () {
        parent.clauses.splice(parent.clauses.indexOf(group), 1);
        self.changed(true);
      });
      header.appendChild(remove);
    }
    var list = h("div", { class: "fb-clauses" });
    group.clauses.forEach(function (clause, index) {
      var clausePath = path + ".clauses[" + index + "]";
      list.appendChild(
        clause.clauses
          ? self.renderGroup(clause, clausePath, level + 1, group)
          : self.renderCondition(clause, clausePath, group)
      );
    });
    if (!group.clauses.length) {
      list.appendChild(
        h("p", {
          class: "fb-empty help",
          text: level === 1
            ? "No conditions: every event with this event name counts."
            : "An empty group matches nothing useful: add a condition or remove it.",
        })
      );
    }
    var addCondition = h("button", { type: "button", class: "fb-add-condition", text: "+ Condition" });
    addCondition.addEventListener("click", function () {
      group.clauses.push(newCondition());
      self.changed(true);
      self.focusLast(path);
    });
    var actions = h("div", { class: "fb-actions" }, [addCondition]);
    if (level < MAX_DEPTH) {
      var addGroup = h("button", { type: "button", class: "fb-add-group", text: "+ Group" });
      addGroup.addEventListener("click", function () {
        group.clauses.push({ conjunction: group.conjunction === "and" ? "or" : "and", clauses: [newCondition()] });
        self.changed(true);
        self.focusLast(path);
      });
      actions.appendChild(addGroup);
    }
    return h(
      "div",
      { class: "fb-group fb-level-" + level, "data-path": path, "data-level": String(level) },
      [header, list, actions, h("div", { class: "fb-errors", hidden: true })]
    );
  };

  Builder.prototype.focusLast = function (groupPath) {
    var group = this.container.querySelector('[data-path="' + groupPath + '"]');
    var key = group && group.querySelector(":scope > .fb-clauses > :last-child .fb-key");
    if (key) key.focus();
  };

  Builder.prototype.renderCondition = function (condition, path, parent) {
    var self = this;
    var key = h("input", {
      type: "text",
      class: "fb-key",
      list: "metadata-key-suggestions",
      placeholder: "metadata key",
      autocomplete: "off",
      "aria-label": "Metadata key",
      maxlength: "100",
    });
    key.value = condition.key;
    key.addEventListener("input", function () {
      condition.key = key.value;
      condition.touched = true;
      self.changed(false);
    });
    key.addEventListener("change", function () {
      // A key seen on recent events suggests its type, until the staff member picks one.
      var seen = self.keyTypes[condition.key];
      if (seen && OPERATORS[seen] && seen !== condition.type && !condition.value && !condition.typeChosen) {
        self.setType(condition, seen);
        self.changed(true);
      }
    });

    var type = select("fb-type", TYPES, condition.type, "Value type");
    type.addEventListener("change", function () {
      condition.typeChosen = true;
      condition.touched = true;
      self.setType(condition, type.value);
      self.changed(true);
    });

    var operator = select("fb-operator", operatorsFor(condition.type), condition.operator, "Operator");
    operator.addEventListener("change", function () {
      condition.operator = operator.value;
      condition.touched = true;
      self.changed(false);
    });

    var value;
    if (condition.type === "boolean") {
      value = select("fb-value", [["true", "true"], ["false", "false"]], condition.value, "Value");
      value.addEventListener("change", function () {
        condition.value = value.value;
        condition.touched = true;
        self.changed(false);
      });
    } else {
      value = h("input", {
        type: "text",
        class: "fb-value",
        placeholder: condition.type === "number" ? "a number, e.g. 100 or 0.5" : "text",
        inputmode: condition.type === "number" ? "decimal" : "text",
        "aria-label": "Value",
      });
      value.value = condition.value;
      value.addEventListener("input", function () {
        condition.value = value.value;
        condition.touched = true;
        self.changed(false);
      });
    }

    var remove = h("button", { type: "button", class: "fb-remove", title: "Remove condition", "aria-label": "Remove condition", text: "×" });
    remove.addEventListener("click", function () {
      parent.clauses.splice(parent.clauses.indexOf(condition), 1);
      self.changed(true);
    });

    return h("div", { class: "fb-condition", "data-path": path }, [
      h("div", { class: "fb-condition-row" }, [key, type, operator, value, remove]),
      h("div", { class: "fb-errors", hidden: true }),
    ]);
  };

  Builder.prototype.setType = function (condition, type) {
    var wasBoolean = condition.type === "boolean";
    condition.type = type;
    var allowed = operatorsFor(type).map(function (op) { return op[0]; });
    if (allowed.indexOf(condition.operator) < 0) condition.operator = allowed[0];
    if (type === "boolean") condition.value = condition.value === "false" ? "false" : "true";
    else if (wasBoolean) condition.value = "";
  };

  // The preview's errors for the filter, less those on conditions nobody has edited yet (a
  // condition just added is empty: "must not be empty" would greet every click on "+ Condition").
  Builder.prototype.touchedErrors = function (errors) {
    var self = this;
    if (this.submitted) return errors;
    return errors.filter(function (error) {
      var match = /^(filter(?:\.clauses\[\d+\])*)/.exec(error.field || "filter");
      var node = match ? self.conditionAt(match[1]) : null;
      return !node || node.clauses || node.touched;
    });
  };

  Builder.prototype.conditionAt = function (path) {
    // "filter.clauses[1].clauses[0]" -> the node of the state tree it names.
    var node = this.state;
    var re = /\.clauses\[(\d+)\]/g;
    var match;
    while ((match = re.exec(path)) && node) node = (node.clauses || [])[Number(match[1])];
    return node;
  };

  // Each error names a field path; it is shown on the deepest group or condition that path is in.
  Builder.prototype.showErrors = function (errors) {
    var self = this;
    var nodes = Array.prototype.slice.call(this.container.querySelectorAll("[data-path]"));
    nodes.forEach(function (node) {
      var box = node.querySelector(":scope > .fb-errors");
      box.textContent = "";
      box.hidden = true;
      node.classList.remove("fb-has-error");
      node.querySelectorAll(":scope > .fb-condition-row > .fb-invalid").forEach(function (input) {
        input.classList.remove("fb-invalid");
      });
    });
    (errors || []).forEach(function (error) {
      var field = error.field || "filter";
      var best = null;
      nodes.forEach(function (node) {
        var path = node.getAttribute("data-path");
        if ((field === path || field.indexOf(path + ".") === 0) && (!best || path.length > best.getAttribute("data-path").length)) {
          best = node;
        }
      });
      best = best || nodes[0];
      if (!best) return;
      var path = best.getAttribute("data-path");
      var part = field.length > path.length ? field.slice(path.length + 1) : "";
      var message = error.message;
      var condition = self.conditionAt(path);
      if (part === "value" && condition && condition.type === "number" && !NUMBER.test(condition.value.trim())) {
        message = "enter a number, such as 100 or 0.5";
      }
      var box = best.querySelector(":scope > .fb-errors");
      box.appendChild(h("div", { class: "fb-error", text: (part ? part + ": " : "") + message }));
      box.hidden = false;
      best.classList.add("fb-has-error");
      var input = best.querySelector(":scope > .fb-condition-row > .fb-" + part);
      if (input) input.classList.add("fb-invalid");
    });
  };

  // --- the live preview --------------------------------------------------------------------

  // Which form field shows an error the server names by its path.
  var FIELD_FOR_ERROR = {
    event_name: "event_name",
    "aggregation.key": "aggregation_key",
    "aggregation.type": "aggregation_type",
    aggregation: "aggregation_type",
  };

  function Preview(form, panel, builder, submitted) {
    this.form = form;
    this.panel = panel;
    this.builder = builder;
    this.submitted = submitted;
    this.touched = {};
    this.url = panel.getAttribute("data-url");
    this.sequence = 0;
    this.timer = null;
  }

  Preview.prototype.field = function (name) {
    return this.form.elements[name];
  };

  Preview.prototype.schedule = function () {
    var self = this;
    clearTimeout(this.timer);
    this.panel.setAttribute("data-state", "pending");
    this.timer = setTimeout(function () { self.run(); }, DEBOUNCE_MS);
  };

  Preview.prototype.body = function () {
    var type = this.field("aggregation_type").value;
    var key = this.field("aggregation_key").value.trim();
    return (
      '{"event_name":' + JSON.stringify(this.field("event_name").value.trim()) +
      ',"aggregation":{"type":' + JSON.stringify(type) +
      ',"key":' + (type === "count" || !key ? "null" : JSON.stringify(key)) + "}" +
      ',"filter":' + (this.field("filter").value || "null") + "}"
    );
  };

  Preview.prototype.run = function () {
    var self = this;
    var sequence = ++this.sequence;
    this.panel.setAttribute("data-state", "loading");
    fetch(this.url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "X-CSRFToken": this.field("csrfmiddlewaretoken").value,
      },
      body: this.body(),
    })
      .then(function (response) {
        return response.json().then(function (data) {
          return { ok: response.ok, data: data };
        });
      })
      .then(function (answer) {
        if (sequence === self.sequence) self.show(answer.ok, answer.data);
      })
      .catch(function () {
        if (sequence !== self.sequence) return;
        self.panel.setAttribute("data-state", "error");
        self.setText("preview-message", "The preview could not be loaded. It retries on the next change.");
      });
  };

  Preview.prototype.label = function (name) {
    var label = this.form.querySelector('label[for="id_' + name + '"]');
    return label ? label.textContent.replace(/:\s*$/, "").trim().toLowerCase() : name;
  };

  Preview.prototype.setText = function (id, text) {
    var node = document.getElementById(id);
    if (node) node.textContent = text;
  };

  Preview.prototype.show = function (ok, data) {
    var self = this;
    this.updateKeys(data.keys || []);
    var errors = data.errors || [];
    var countMeter = this.field("aggregation_type").value === "count";
    ["event_name", "aggregation_key", "aggregation_type"].forEach(function (name) {
      var slot = document.getElementById("live-error-" + name);
      if (slot) slot.textContent = "";
    });
    var list = document.getElementById("preview-errors");
    list.textContent = "";
    if (!ok) {
      ["preview-matched", "preview-contributing", "preview-skipped-missing", "preview-skipped-nan", "preview-examined", "preview-distinct"].forEach(function (id) {
        self.setText(id, "–");
      });
      this.fillSample([]);
      var filterErrors = this.builder.touchedErrors(errors.filter(function (error) {
        return (error.field || "").indexOf("filter") === 0;
      }));
      var shown = [];
      var untouched = [];
      errors.forEach(function (error) {
        if ((error.field || "").indexOf("filter") === 0) {
          if (filterErrors.indexOf(error) >= 0) shown.push(error);
          return;
        }
        var name = FIELD_FOR_ERROR[error.field];
        if (name && !self.submitted && !self.touched[name]) {
          if (untouched.indexOf(name) < 0) untouched.push(name);
          return;
        }
        shown.push(error);
        var slot = name && document.getElementById("live-error-" + name);
        if (slot) slot.textContent = error.message;
      });
      shown.forEach(function (error) {
        list.appendChild(h("li", { text: (error.field ? error.field + ": " : "") + error.message }));
      });
      list.hidden = !shown.length;
      this.builder.showErrors(filterErrors);
      // Nothing marked yet: the form is just not filled in, which is no error.
      this.panel.setAttribute("data-state", shown.length ? "invalid" : "incomplete");
      this.setText(
        "preview-message",
        shown.length || !untouched.length
          ? "Fix the marked fields to see the preview."
          : "Fill in " + untouched.map(function (name) { return self.label(name); }).join(" and ") + " to see the preview."
      );
      return;
    }
    list.hidden = true;
    this.builder.showErrors([]);
    this.panel.setAttribute("data-state", "ready");
    this.setText("preview-matched", String(data.matched));
    this.setText("preview-contributing", String(data.contributing));
    this.setText("preview-skipped-missing", countMeter ? "0" : String(data.skipped_missing_key));
    this.setText("preview-skipped-nan", countMeter ? "0" : String(data.skipped_not_a_number));
    this.setText("preview-examined", String(data.examined));
    var distinct = document.getElementById("preview-distinct-stat");
    if (distinct) distinct.hidden = data.distinct_values === null || data.distinct_values === undefined;
    this.setText("preview-distinct", data.distinct_values === null || data.distinct_values === undefined ? "–" : String(data.distinct_values));
    this.setText(
      "preview-message",
      data.matched ? "" : data.examined ? "No event in the last 7 days passes the filter." : "No events with this name in the last 7 days."
    );
    this.fillSample(data.sample || []);
  };

  Preview.prototype.fillSample = function (sample) {
    var body = document.querySelector("#preview-sample tbody");
    body.textContent = "";
    sample.forEach(function (event) {
      var value = event.skip_reason ? "skipped: " + event.skip_reason : event.value === null ? "1 event" : event.value;
      var rowClass = event.skip_reason ? "skipped" : "";
      body.appendChild(
        h("tr", { class: rowClass }, [
          h("td", { text: event.timestamp.replace("T", " ").slice(0, 19) }),
          h("td", { text: event.customer_id }),
          h("td", { class: "event-id", text: event.event_id }),
          h("td", { class: "value", text: value }),
        ])
      );
      body.appendChild(
        h("tr", { class: "metadata-row " + rowClass }, [
          h("td", { class: "metadata", colspan: "4" }, [h("code", { text: event.metadata })]),
        ])
      );
    });
    document.getElementById("preview-sample").hidden = !sample.length;
  };

  Preview.prototype.updateKeys = function (keys) {
    var list = document.getElementById("metadata-key-suggestions");
    var types = {};
    list.textContent = "";
    keys.forEach(function (item) {
      types[item.key] = item.type;
      list.appendChild(h("option", { value: item.key, text: item.type }));
    });
    this.builder.keyTypes = types;
  };

  // --- wiring ------------------------------------------------------------------------------

  function toggleKey(form) {
    var row = form.querySelector(".field-aggregation_key");
    if (row) row.hidden = form.elements.aggregation_type.value === "count";
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("meter-form");
    var panel = document.getElementById("preview");
    if (!form || !panel) return;
    var preview;
    // A form the server sent back (it was submitted) shows every error at once.
    var submitted = form.getAttribute("data-submitted") === "true";
    var builder = new Builder(document.getElementById("filter-builder"), form.elements.filter, function () {
      preview.schedule();
    }, submitted);
    builder.keyTypes = {};
    readJSON("metadata-keys", []).forEach(function (item) {
      builder.keyTypes[item.key] = item.type;
    });
    preview = new Preview(form, panel, builder, submitted);
    toggleKey(form);
    ["event_name", "aggregation_type", "aggregation_key"].forEach(function (name) {
      form.elements[name].addEventListener("input", function () {
        preview.touched[name] = true;
        toggleKey(form);
        preview.schedule();
      });
      form.elements[name].addEventListener("change", function () {
        preview.touched[name] = true;
        toggleKey(form);
        preview.schedule();
      });
    });
    preview.run();
  });
})();
