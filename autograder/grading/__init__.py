"""Batch grading of a class: ``python -m autograder grade ASSIGNMENT SUBMISSIONS`` (never in the bundle).

One grade, from the command line to the kernel and back (details and guarantees in docs/grading.md):

1. :mod:`.cli` parses the command line into :class:`.options.Options` and calls :func:`.supervisor.grade`.
2. :class:`.supervisor.Grader` finds the submissions (:mod:`.discovery`), loads the assignment and, once
   per run, builds the template course (:mod:`.template`) and chooses the sandbox (:mod:`.boxes`).
3. Per student, the supervisor checks the notebook statically (:mod:`.notebook`: load + restore the
   instructor's cells; :mod:`.scan`: forbidden imports and tampering, with the matcher of
   :mod:`.policy`) and starts a worker (:mod:`.children`) with a typed :class:`.types.Job`.
4. The worker (:mod:`.worker`, one entry point) runs nbgrader's autograde with
   :class:`.executor.SandboxedExecute`; jupyter_client starts the kernel through :mod:`.sandbox`
   (own user, namespaces, :mod:`.cgroups`, rlimits), and inside it :mod:`.kernel_guard` guards imports.
5. The worker turns the executor's events and the gradebook's scores into a :class:`.types.Result`
   with the pure :func:`.verdict.verdict`, and renders the feedback page (:mod:`.render`).
6. The supervisor writes ``results/<student>.json``, ``feedback/<student>.html`` and ``grades.csv``
   (:mod:`.report`).

Importing this package imports nothing: the kernel guard and the sandbox wrapper live here and start
with ``python -I -m autograder.grading.<module>``.
"""
