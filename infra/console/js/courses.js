// Courses: their titles, and where each runs (the launch URL learners are sent to, with a
// signed token).
import { api, can, forgetCourses } from './api.js';
import { h, fieldError, announce, fill } from './dom.js';

export async function coursesView(main) {
  document.title = 'Courses · KeyPool console';
  const search = h('input', { id: 'course-filter', type: 'search', name: 'search' });
  const list = h('div', { id: 'courses' });
  const live = h('p', { role: 'status', id: 'courses-status' });

  /** The edit form of one course: its launch URL and description. */
  function editor(course, row) {
    const url = h('input', { id: `launch-url-${course.course_id}`, name: 'launch_url', type: 'url', inputmode: 'url', value: course.launch_url || '', 'aria-describedby': 'launch-url-hint', 'data-hint': 'launch-url-hint', placeholder: 'https://' });
    const description = h('textarea', { id: `description-${course.course_id}`, name: 'description', rows: 2 }, course.description || '');
    const form = h('form', { class: 'stack card', 'aria-label': `Edit ${course.title}`, onsubmit: async (ev) => {
      ev.preventDefault();
      fieldError(url, ''); fieldError(description, '');
      try {
        const saved = await api('PATCH', `/v1/courses/${encodeURIComponent(course.course_id)}`, {
          launch_url: url.value.trim() || null,
          description: description.value.trim() || null,
        });
        forgetCourses();
        live.textContent = `“${saved.title}” saved.`;
        row.replaceWith(courseRow(saved));
      } catch (e) {
        if (e.fields.launch_url) fieldError(url, e.fields.launch_url);
        if (e.fields.description) fieldError(description, e.fields.description);
        if (!e.fields.launch_url && !e.fields.description) live.textContent = e.message;
        (e.fields.description && !e.fields.launch_url ? description : url).focus();
      }
    } },
    h('label', { for: url.id }, 'Launch URL'),
    h('p', { class: 'hint', id: 'launch-url-hint' }, 'Where the course runs (https). A learner who launches goes there with a signed token the platform can check.'),
    url,
    h('label', { for: description.id }, 'Description'), description,
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Save'),
      h('button', { type: 'button', class: 'secondary', onclick: () => { row.replaceWith(courseRow(course)); } }, 'Cancel')));
    return form;
  }

  function courseRow(course) {
    const row = h('li', { class: 'card', 'data-course': course.course_id },
      h('p', {}, h('strong', {}, course.title)),
      h('p', { class: 'hint' }, course.launch_url ? `Launches at ${course.launch_url}` : 'No launch URL: a launch is only counted.'),
      can.change() ? h('button', { type: 'button', class: 'secondary', 'aria-label': `Edit ${course.title}`, onclick: () => {
        const form = editor(course, row);
        row.replaceChildren(form);
        form.querySelector('input').focus();
      } }, 'Edit') : null);
    return row;
  }

  async function load() {
    const q = new URLSearchParams({ limit: '100' });
    if (search.value.trim()) q.set('search', search.value.trim());
    try {
      const page = await api('GET', `/v1/courses?${q}`);
      fill(list, page.items.length
        ? h('ul', { class: 'plain', id: 'course-list' }, page.items.map(courseRow))
        : h('p', {}, 'No course yet: create one when you create a pool.'));
      announce(`${page.items.length} courses shown`);
    } catch (e) { fill(list, h('p', { class: 'alert' }, e.message)); }
  }

  fill(main,
    h('h1', {}, 'Courses'),
    h('form', { role: 'search', 'aria-label': 'Courses', class: 'row', onsubmit: (ev) => { ev.preventDefault(); load(); } },
      h('div', {}, h('label', { for: 'course-filter' }, 'Course title'), search),
      h('div', {}, h('button', { type: 'submit' }, 'Search'))),
    live, list);
  await load();
}
