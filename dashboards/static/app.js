// The only script of the dashboards: pickers submit when changed (their button stays for no-JS and keyboard use).
document.addEventListener("change", (event) => {
  const field = event.target;
  if (field.matches && field.matches("select[data-autosubmit]") && field.form) field.form.requestSubmit();
});
document.documentElement.classList.add("js");
