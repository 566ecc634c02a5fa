// pgfleet web UI: the little behaviour htmx does not cover.
// - Live regions ([data-live]) poll with htmx; a poll is skipped while the
//   user has a menu open or keyboard focus inside the region, so the swap
//   never closes a menu or steals focus.
// - Copy buttons ([data-copy]) copy the value of the element they name.
// - Action menus (<details class="menu">) close on Escape and outside clicks.
(function () {
  "use strict";

  function busy(region) {
    if (region.querySelector("details[open]")) return true;
    // Keyboard focus only: a mouse click also focuses, and would otherwise
    // pause updates until the user clicks elsewhere.
    var focused = document.activeElement;
    return Boolean(focused && region.contains(focused) && focused.matches(":focus-visible"));
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var region = event.detail.elt;
    if (region && region.matches && region.matches("[data-live]") && busy(region)) {
      event.preventDefault();
    }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (button) {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) return;
      var text = source.value !== undefined ? source.value : source.textContent;
      var done = function () {
        var label = button.textContent;
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = label; }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { source.select(); });
      } else if (source.select) {
        source.select();
        document.execCommand("copy");
        done();
      }
      return;
    }
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      menu.removeAttribute("open");
      var summary = menu.querySelector("summary");
      if (summary) summary.focus();
    });
  });
})();
