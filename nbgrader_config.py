"""nbgrader configuration for mf-course.

solutions/<assignment>/<assignment>.ipynb are the source notebooks (solutions + hidden tests);
`nbgrader generate_assignment` writes the student versions to assignments/<assignment>/.
"""
import os

c = get_config()  # noqa: F821  (provided by nbgrader)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.course_id = "mf-course"
# Only notebooks are released: no helper files, caches or checkpoints.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "*.py", "*.log", "*.db"]
# Training cells take seconds, not the default 30 s per cell worst case; a hung cell is cut at 120 s.
c.ExecutePreprocessor.timeout = 120
c.Execute.timeout = 120
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
# Pages made from students' notebooks (nbgrader's formgrader and generate_feedback) never run their
# HTML: nbconvert's sanitizer on outputs, and every markdown cell and output cleaned by the course's
# allow-list (nbgrader's formgrade/feedback templates render markdown raw otherwise). See docs/grading.md.
c.HTMLExporter.sanitize_html = True
c.HTMLExporter.preprocessors = ["autograder.grading.sanitize.SanitizeCells"]
