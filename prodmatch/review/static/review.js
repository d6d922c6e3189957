// prodmatch review: keyboard shortcuts for the label page (y / n / u / z / b). No dependencies.
(function () {
  "use strict";
  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    var key = event.key.toLowerCase();
    if (key === "b") {
      var toggle = document.getElementById("blind-toggle");
      if (toggle) { event.preventDefault(); window.location.href = toggle.href; }
      return;
    }
    var button = document.querySelector('button[data-key="' + key + '"]');
    if (!button || button.disabled) return;
    event.preventDefault();
    button.classList.add("pressed");
    // Disable every answer button once one is sent, so a held key cannot answer the next pair unseen.
    document.querySelectorAll("button[data-key]").forEach(function (b) { b.disabled = true; });
    var form = button.form || document.getElementById(button.getAttribute("form"));
    if (button.name) {
      var field = document.createElement("input");
      field.type = "hidden"; field.name = button.name; field.value = button.value;
      form.appendChild(field);
    }
    form.submit();
  });
})();
