"""nbgrader's Execute preprocessor, hardened for untrusted notebooks (used inside the grading worker).

Differences from :class:`nbgrader.preprocessors.Execute`:

* the kernel is always the sandbox kernel spec (the notebook's ``kernelspec`` is ignored), reached
  over ZeroMQ ``ipc://`` sockets in the sandbox's run directory, with a cap on message size;
* a dead kernel (``os._exit``, segfault, OOM kill, CPU limit) or a kernel that cannot be
  interrupted after a timeout does not abort the whole notebook (nbgrader would record nothing):
  the failing cell and every later code cell get an error output, so the tests that already ran
  keep their points and the later ones score 0;
* output is capped per notebook: after the cap, stdout/display output is replaced by one notice,
  but errors, ``execute_result`` (partial credit) and the presence of stderr output (which makes
  nbgrader give 0 to a test cell) are kept, so truncation never changes a score;
* after every cell the kernel guard's :func:`~autograder.grading.kernel_guard.status` is evaluated as a
  ``user_expression``; anything but ``'ok'`` is recorded as tampering;
* a notebook-level budget (``notebook_timeout`` seconds from the first cell on): a cell still running
  when it runs out is interrupted like a timed-out cell, the later cells are not run (they get a
  ``NotExecuted`` error, so their tests score 0) and the tests that already ran keep their points;
* the kernel can be started before nbgrader needs it (:func:`prestart_kernel`, called by the worker
  before autograde), so its start-up overlaps nbgrader's own preparation of the notebook;
* everything that happened is appended as JSON lines to ``events_file`` for the grader, between a
  ``started`` and a ``finished`` event (which carries the execution time of the cells): a record
  without both is not trusted (see :func:`autograder.grading.verdict.parse_events`).
"""
from __future__ import annotations

import asyncio
import json
import math
import signal
import time

import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Integer, Unicode

GUARD_EXPRESSION = "__import__('sys').modules['autograder.grading.kernel_guard'].status()"
GUARD_KEY = "__autograder_guard__"

# the kernel started by :func:`prestart_kernel`, adopted by the next SandboxedExecute.preprocess
_prestarted: "SandboxKernelManager | None" = None
_prestarted_at: float | None = None   # when it was launched (time.monotonic())


class SandboxKernelManager(AsyncKernelManager):
    """jupyter_client's kernel manager with a cap on the size of a message from the kernel."""

    max_message_bytes = Integer(64 * 1024 * 1024, config=True)

    def client(self, **kwargs):
        ctx = zmq.asyncio.Context()
        ctx.setsockopt(zmq.MAXMSGSIZE, int(self.max_message_bytes))
        kwargs.setdefault("context", ctx)
        return super().client(**kwargs)


def prestart_kernel(config, kernel_name: str, cwd: str) -> None:
    """Start the sandbox kernel now (the wrapper builds the sandbox and ipykernel boots in the background
    while nbgrader prepares the notebook); the next :meth:`SandboxedExecute.preprocess` adopts it."""
    global _prestarted, _prestarted_at
    _prestarted_at = time.monotonic()
    km = SandboxKernelManager(kernel_name=kernel_name, config=config)
    run_sync(km.start_kernel)(cwd=cwd)
    _prestarted = km


def discard_prestarted_kernel() -> None:
    """Kill the prestarted kernel if nobody adopted it (autograde failed before executing)."""
    global _prestarted
    km, _prestarted = _prestarted, None
    if km is not None and km.has_kernel:
        try:
            run_sync(km.shutdown_kernel)(now=True)
        except (OSError, RuntimeError, TimeoutError, zmq.ZMQError):
            pass  # the worker's clean-up kills the sandbox's processes anyway


def _error(ename, evalue):
    return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                        traceback=[f"{ename}: {evalue}"])


class SandboxedExecute(Execute):
    """nbgrader's Execute for untrusted notebooks (see the module docstring)."""

    sandbox_kernel = Unicode("mf-sandbox", config=True)
    events_file = Unicode("", config=True)
    output_limit = Integer(5 * 1024 * 1024, config=True, help="bytes of output kept per notebook")
    guard = Integer(1, config=True, help="evaluate the kernel guard after every cell")
    responsive_timeout = Integer(10, config=True,
                                 help="seconds an interrupted kernel has to answer before it is killed")
    notebook_timeout = Integer(0, config=True, help="seconds for all cells together, from the first cell "
                                                    "on (0: no limit)")

    def __init__(self, *args, **kwargs):
        kwargs["kernel_manager_class"] = SandboxKernelManager
        super().__init__(*args, **kwargs)

    # -- bookkeeping ---------------------------------------------------------------------------
    def _event(self, kind, cell_index=None, **info):
        cell = self.nb.cells[cell_index] if cell_index is not None and self.nb is not None else None
        gid = None
        if cell is not None:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        ev = {"event": kind, "cell": cell_index, "grade_id": gid, **info}
        self._events.append(ev)
        if self.events_file:
            with open(self.events_file, "a") as f:
                f.write(json.dumps(ev) + "\n")

    def preprocess(self, nb, resources=None, km=None):
        global _prestarted
        self._events = []
        self._abort = None
        self._out_bytes = 0
        self._truncated_cells = set()
        self._stderr_marked = set()
        self._deadline = None          # monotonic time at which the notebook's budget runs out
        self._budget_hit = False
        self._cell_seconds = 0.0       # execution time of the cells (the notebook's own time)
        self._cells_run = 0
        self.kernel_name = self.sandbox_kernel
        started = self._started = time.monotonic()
        self._launched = None
        self._kernel_wait_s = self._kernel_boot_s = None
        self._event("started", notebook_timeout=self.notebook_timeout, cell_timeout=self.timeout)
        adopted = None
        if km is None and _prestarted is not None:
            adopted, _prestarted = _prestarted, None
            self._launched = _prestarted_at
        try:
            out = super().preprocess(nb, resources, km if adopted is None else adopted)
        finally:
            if adopted is not None and self.km is not None:
                self._cleanup_kernel()  # nbclient leaves a kernel it did not start running
        self._event("finished", cells=self._cells_run, notebook_s=round(self._cell_seconds, 3),
                    execute_s=round(time.monotonic() - started, 3), budget_hit=self._budget_hit,
                    kernel_wait_s=_rounded(self._kernel_wait_s), kernel_boot_s=_rounded(self._kernel_boot_s))
        return out

    def create_kernel_manager(self):
        self.kernel_name = self.sandbox_kernel  # never the notebook's own kernelspec
        self.km = self.kernel_manager_class(kernel_name=self.sandbox_kernel, config=self.config)
        return self.km

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        now = time.monotonic()
        self._kernel_wait_s = now - self._started       # how long nbgrader waited for the kernel
        self._kernel_boot_s = now - (self._launched or self._started)   # launch -> ready
        if self.guard:
            execute = kc.execute

            def guarded_execute(code, *args, **kwargs):
                kwargs["user_expressions"] = {GUARD_KEY: GUARD_EXPRESSION}
                return execute(code, *args, **kwargs)

            kc.execute = guarded_execute
        return kc

    # nbclient binds these sync wrappers to its own coroutines: rebind them to ours
    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    # -- execution ------------------------------------------------------------------------------
    def _kernel_exit(self):
        try:
            proc = self.km.provisioner.process  # type: ignore[union-attr]
            return proc.poll()
        except AttributeError:
            return None

    # -- the notebook's budget -------------------------------------------------------------------
    def _budget_left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _get_timeout(self, cell):
        timeout = super()._get_timeout(cell)
        left = self._budget_left()
        if cell is None or left is None:
            return timeout
        left = max(1, math.ceil(left))
        return left if timeout is None else min(timeout, left)

    def _out_of_budget(self, cell_index) -> str:
        self._budget_hit = True
        self._event("notebook_timeout", cell_index, seconds=self.notebook_timeout)
        return f"the notebook ran out of its {self.notebook_timeout} s budget (--notebook-timeout)"

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type != "code" or not cell.source.strip():
            return cell
        if self._deadline is None and self.notebook_timeout > 0:
            self._deadline = time.monotonic() + self.notebook_timeout
        if not self._abort and self._budget_left() is not None and self._budget_left() <= 0:
            self._abort = self._out_of_budget(cell_index)
        if self._abort:
            cell.outputs = [_error("NotExecuted", f"not executed: {self._abort}")]
            return cell
        timeouts = sum(1 for e in self._events if e["event"] in ("timeout", "notebook_timeout"))
        started = time.monotonic()
        try:
            await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            if sum(1 for e in self._events if e["event"] in ("timeout", "notebook_timeout")) > timeouts:
                # the cell timed out and was interrupted: is the kernel listening again?
                try:
                    await self.kc.kernel_info(reply=True, timeout=self.responsive_timeout)
                except (TimeoutError, RuntimeError, OSError, zmq.ZMQError):  # no reply, or the kernel is gone
                    raise CellTimeoutError("the kernel did not respond after the interrupt") from None
            return cell
        except DeadKernelError:
            code = None
            for _ in range(20):
                code = self._kernel_exit()
                if code is not None:
                    break
                await asyncio.sleep(0.1)
            how = _describe_exit(code)
            self._event("kernel_died", cell_index, exit_code=code, how=how)
            self._abort = f"the kernel died in an earlier cell ({how})"
            cell.outputs = list(cell.get("outputs", [])) + [_error("DeadKernelError", f"the kernel died ({how})")]
        except CellTimeoutError:  # interrupt failed: the kernel does not respond any more
            if self._budget_hit:
                self._event("notebook_timeout", cell_index, seconds=self.notebook_timeout, unresponsive=True)
                self._abort = "the notebook ran out of its budget and the kernel could not be interrupted"
                message = f"the notebook ran out of its {self.notebook_timeout} s budget and could not be interrupted"
            else:
                self._event("timeout", cell_index, unresponsive=True)
                self._abort = "an earlier cell timed out and the kernel could not be interrupted"
                message = f"cell timed out after {self.timeout} s and could not be interrupted"
            cell.outputs = list(cell.get("outputs", [])) + [_error("CellTimeoutError", message)]
            try:
                await self.km.shutdown_kernel(now=True)
            except (OSError, RuntimeError, TimeoutError, zmq.ZMQError):
                pass  # already gone; the worker's clean-up kills whatever is left of the sandbox
        finally:
            self._cell_seconds += time.monotonic() - started
            self._cells_run += 1
        return cell

    execute_cell = run_sync(async_execute_cell)

    async def _async_handle_timeout(self, timeout, cell=None):
        index = None
        if cell is not None and self.nb is not None:
            for i, c in enumerate(self.nb.cells):
                if c is cell:
                    index = i
                    break
        left = self._budget_left()
        if cell is not None and left is not None and left <= 0.5:  # the notebook's budget, not the cell's
            self._abort = self._out_of_budget(index)
            reply = await super()._async_handle_timeout(timeout, cell)  # interrupts the kernel
            evalue = f"{self._abort}; the cell was interrupted and the later cells are not run"
            return {"content": {"status": "error", "ename": "NotebookTimeoutError", "evalue": evalue,
                                "traceback": [f"NotebookTimeoutError: {evalue}"]}} if reply is not None else None
        self._event("timeout", index, seconds=timeout)
        return await super()._async_handle_timeout(timeout, cell)

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        cell, reply, index = kwargs["cell"], kwargs["execute_reply"], kwargs.get("cell_index")
        content = reply.get("content", {})
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and "[autograder: output truncated" in str(out.get("text", "")) \
                    and not any(e["event"] == "output_truncated" for e in self._events):
                self._event("output_truncated", index, limit=self.output_limit, where="kernel")
            if out.get("output_type") == "error":
                if out.get("ename") == "MemoryError":
                    self._event("memory_error", index)
                evalue = str(out.get("evalue", ""))
                if out.get("ename") in ("ImportError", "ModuleNotFoundError") and \
                        evalue.startswith("[autograder] forbidden import: "):
                    names = evalue.split(": ", 1)[1].split(" may not", 1)[0]
                    self._event("forbidden_import", index, what=names[:300])
        if self.guard and content.get("status") == "ok":
            result = content.get("user_expressions", {}).get(GUARD_KEY)
            text = None
            if isinstance(result, dict) and result.get("status") == "ok":
                text = result.get("data", {}).get("text/plain")
            if text != "'ok'":
                if isinstance(result, dict) and result.get("status") == "error":
                    text = f"guard unavailable ({result.get('ename')}: {result.get('evalue')})"
                self._event("tampering", index, what=str(text)[:500])

    # -- output cap -----------------------------------------------------------------------------
    def output(self, outs, msg, display_id, cell_index):
        msg_type = msg["msg_type"]
        content = msg.get("content", {})
        size = _size(content)
        self._out_bytes += size
        if self._out_bytes <= self.output_limit:
            return super().output(outs, msg, display_id, cell_index)
        if cell_index not in self._truncated_cells:
            self._truncated_cells.add(cell_index)
            if len(self._truncated_cells) == 1:
                self._event("output_truncated", cell_index, limit=self.output_limit)
            outs.append(NotebookNode(output_type="stream", name="stdout",
                                     text=f"\n[autograder: output truncated, the notebook printed more "
                                          f"than {self.output_limit // 1024} KiB]\n"))
        if msg_type == "error":
            return super().output(outs, msg, display_id, cell_index)
        if msg_type == "stream" and content.get("name") == "stderr":
            if cell_index not in self._stderr_marked:  # keep the fact that stderr was written
                self._stderr_marked.add(cell_index)
                outs.append(NotebookNode(output_type="stream", name="stderr",
                                         text="[autograder: stderr output truncated]\n"))
            return None
        if msg_type == "execute_result":  # partial credit lives here: keep it, shortened
            data = dict(content.get("data", {}))
            data = {"text/plain": str(data.get("text/plain", ""))[:10000]}
            out = NotebookNode(output_type="execute_result", data=data, metadata={},
                               execution_count=content.get("execution_count"))
            outs.append(out)
            return out
        return None


def _rounded(x):
    return None if x is None else round(x, 3)


def _size(content) -> int:
    n = 0
    for key in ("text", "evalue", "ename"):
        v = content.get(key)
        if isinstance(v, str):
            n += len(v)
    for v in (content.get("data") or {}).values():
        n += len(v) if isinstance(v, str) else len(json.dumps(v, default=str))
    for line in content.get("traceback") or ():
        n += len(line)
    return n + 100


def _describe_exit(code) -> str:
    if code is None:
        return "no exit status"
    if code > 128:
        sig = code - 128
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        extra = {"SIGKILL": "killed", "SIGXCPU": "CPU time limit exceeded", "SIGSEGV": "segmentation fault",
                 "SIGABRT": "aborted", "SIGBUS": "bus error"}.get(name, "")
        return f"{name}{', ' + extra if extra else ''}"
    if code == 126:
        return "the sandbox could not start the kernel"
    return f"exit code {code}"
