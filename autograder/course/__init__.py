"""Instructor-side course tools (never in the student bundle).

* :mod:`~autograder.course.files` -- the course root (``ROOT``, :func:`find_course_root`) and
  :func:`atomic_write`, shared by the whole autograder;
* :mod:`~autograder.course.notebooks` -- ``course_src/*.py`` -> ``solutions/`` -> ``assignments/``
  (``python -m autograder.course.notebooks build|release``);
* :mod:`~autograder.course.bundle` -- the student bundle (``python -m autograder.course.bundle``);
* :mod:`~autograder.course.pretend` -- pretend submissions built from the solutions (tests, demo);
* :mod:`~autograder.course.demo` -- ``python -m autograder demo``: release and grade pretend students.

Importing this package imports nothing but the standard library.
"""
