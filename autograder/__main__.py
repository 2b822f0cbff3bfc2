"""``python -m autograder COMMAND``: ``demo`` runs :mod:`autograder.course.demo`, every other command
the grading CLI (:mod:`autograder.grading.cli`, e.g. ``grade``).  The student bundle ships this file
without ``course/`` and ``grading/``: there it says so and exits with status 2."""
import sys


def main(argv=None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to the demo or the grading CLI; exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    package = "autograder.course" if argv[:1] == ["demo"] else "autograder.grading"
    try:
        if package == "autograder.course":
            from autograder.course.demo import main as command
            argv = argv[1:]
        else:
            from autograder.grading.cli import main as command
    except ModuleNotFoundError as error:
        if error.name != package:
            raise
        print(f"{package} is not installed here (the student bundle has no instructor tools)", file=sys.stderr)
        return 2
    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
