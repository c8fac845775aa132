// The only script of the dashboards: pickers submit when changed (their button stays for no-JS and keyboard use).
document.addEventListener("change", (event) => {
  const field = event.target;
  if (field.matches && field.matches("select[data-autosubmit]") && field.form) field.form.requestSubmit();
});
document.documentElement.classList.add("js");

// A box that scrolls (a wide table or chart on a phone) must be reachable by keyboard to be scrolled with the
// arrow keys, and named for a screen reader: the table's caption, else the nearest heading above it.
// Boxes the template already made focusable are left as they are; the others follow the window's width.
function boxName(box) {
  const caption = box.querySelector("caption");
  if (caption && caption.textContent.trim()) return caption.textContent.trim();
  for (let node = box; node && node !== document.body; node = node.parentElement) {
    for (let sibling = node.previousElementSibling; sibling; sibling = sibling.previousElementSibling) {
      const heading = sibling.matches("h1, h2, h3, h4") ? sibling : sibling.querySelector("h1, h2, h3, h4");
      if (heading && heading.textContent.trim()) return heading.textContent.trim();
    }
  }
  return document.title;
}
function markScrollBoxes() {
  for (const box of document.querySelectorAll(".table-scroll, .chart-scroll")) {
    if (box.hasAttribute("tabindex") && !box.dataset.scrollFocus) continue;
    const scrolls = box.scrollWidth > box.clientWidth + 1 || box.scrollHeight > box.clientHeight + 1;
    if (scrolls) {
      box.dataset.scrollFocus = "1";
      box.setAttribute("tabindex", "0");
      box.setAttribute("role", "region");
      if (!box.hasAttribute("aria-label") && !box.hasAttribute("aria-labelledby")) {
        box.setAttribute("aria-label", boxName(box));
        box.dataset.scrollLabel = "1";
      }
    } else if (box.dataset.scrollFocus) {
      for (const name of ["tabindex", "role", "data-scroll-focus"]) box.removeAttribute(name);
      if (box.dataset.scrollLabel) for (const name of ["aria-label", "data-scroll-label"]) box.removeAttribute(name);
    }
  }
}
document.addEventListener("DOMContentLoaded", markScrollBoxes);
document.addEventListener("toggle", markScrollBoxes, true);  // a table inside <details> is measured once opened
let resizeTimer;
window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(markScrollBoxes, 150); });
