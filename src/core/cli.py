"""The one boundary every command line runs inside, and TensorFlow's quiet start.

`run_command(main, argv)` turns what can end a command into an exit status and
at most one line on stderr:

- a `UserError`: `error: <message>`, exit `error.exit_code` (see `src.errors`);
- an `OSError` (a folder given as a file, a full disk): `error: <file>: <reason>`, exit 2;
- Ctrl-C: `interrupted: ...`, exit 130; SIGTERM: `terminated: ...`, exit 143;
- stdout closed by its reader (`| head`): `OutputClosed`, a `KeyboardInterrupt` raised at the next
  write, so that every cleanup runs and says what it left as for Ctrl-C: `stopped (output closed): ...`,
  exit 141, as SIGPIPE ends a shell tool.

Whatever the console's encoding (`LC_ALL=C`, a Windows code page), printing never
fails: a character it cannot show is written as a Python escape (see `robust_output`).

SIGTERM raises `Terminated` (a `KeyboardInterrupt`), so every `finally` and
`except KeyboardInterrupt` cleanup that Ctrl-C runs, runs for it too. Both are
remembered, so that one a library swallows is raised again, and only noted while
TensorFlow runs, to be raised at its next check (see `src.core.interrupts`). Commands
import their heavy libraries inside `main`, so an interruption while they load
is caught here as well.
"""

from __future__ import annotations

import argparse
import codecs
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

from src.core.errors import EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED, EXIT_TERMINATED, EXIT_USER, UserError
from src.core.interrupts import (
    collect_what_it_cut_short,
    collecting_what_it_cut_short,
    forget_interruption,
    interrupt,
    interruption_pending,
    is_pending,
    send_again,
    stop_sending_again,
)
from src.core.safe_text import environment_secrets, printable, redact

MAX_MESSAGE_CHARS = 300

# What a command line catches and prints as one line: the user's problems, and the
# file system's (a folder given as --out, a full disk, a file without read permission).
USER_ERRORS = (UserError, OSError)

# TensorFlow's C++ start-up lines, written to fd 2 before its log level applies:
# absl's banner, glog-style lines (`I0000 00:00:... port.cc:153] ...`) and the CPU-feature note.
TENSORFLOW_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IWEF]\d{4} \d\d:\d\d:\d\d"
    r"|To enable the following instructions:)"
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanups run as they do for Ctrl-C."""

    exit_code = EXIT_TERMINATED
    verb = "terminated"


class OutputClosed(KeyboardInterrupt):
    """stdout's reader went away (`| head`): raised by the next write, so that cleanups run as for Ctrl-C.

    Python's own `BrokenPipeError` is an `Exception`, which libraries catch and carry on; and no cleanup
    that says what a Ctrl-C left would say it.
    """

    exit_code = EXIT_OUTPUT_CLOSED
    verb = "stopped (output closed)"


class NoOutput:
    """Where a command started without stdout or stderr (`>&-`, a daemon) writes: nowhere, as `print` does
    with none, but also for what writes to `sys.stdout` itself (Keras' progress bar)."""

    def write(self, text: str) -> int:
        return len(text)

    def writelines(self, lines) -> None:
        pass

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class GuardedOutput:
    """stdout or stderr, whose writes to a pipe its reader has closed raise `OutputClosed`."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise OutputClosed() from None

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise OutputClosed() from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class OneWordUsage:
    """A mixin for help formatters: an action marked `one_word` shows one metavar, whatever its nargs.

    A comma list takes several words only to refuse them with the fix (`use commas`); its usage must
    not invite them.
    """

    def _format_args(self, action, default_metavar):
        if getattr(action, "one_word", False):
            return self._metavar_formatter(action, default_metavar)(1)[0]
        return super()._format_args(action, default_metavar)


class HelpFormatter(OneWordUsage, argparse.HelpFormatter):
    pass


class RawDescriptionHelpFormatter(OneWordUsage, argparse.RawDescriptionHelpFormatter):
    pass


class ArgumentParser(argparse.ArgumentParser):
    """An `argparse` parser whose mistakes are `UserError`s: one line, not usage plus a line."""

    def __init__(self, *args, **kwargs):
        # No abbreviations: `--sub` for `--submit` today could mean another flag added tomorrow.
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UserError(f"{message} (see {self.prog} --help)")


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` on one line and at most `limit` characters, secrets masked and control characters escaped."""
    text = printable(" ".join(redact(str(text), environment_secrets()).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def user_error_message(error: Exception) -> str:
    """The one line a command line prints for one of `USER_ERRORS`."""
    if isinstance(error, OSError) and error.filename:
        return shorten(f"error: {error.filename}: {error.strerror or error}")
    return shorten(f"error: {error}")


def interruption_message(interruption: KeyboardInterrupt) -> str:
    """`interrupted: <what the command left>` (or `terminated: ...` for SIGTERM)."""
    verb = getattr(interruption, "verb", "interrupted")
    detail = str(interruption) or "nothing was finished"
    return shorten(f"{verb}: {detail}")


def _on_sigterm(signum, frame):
    # Once: a second SIGTERM while the first one's cleanups run must not cut them short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    interrupt(Terminated())


def _on_sigint(signum, frame):
    interrupt(KeyboardInterrupt())


def _unraisable_hook(previous: Callable):
    """`sys.unraisablehook` that sends the pending interruption again where Python dropped it, untold.

    Python drops what a `__del__` or a weakref callback raises, and garbage collection runs those anywhere,
    so a signal's handler may run in one. A clean-up of an object the interruption cut short (a `ZipFile`
    half made, whose `__del__` fails), run by `collect_what_it_cut_short` as the command ends, is dropped
    without its traceback: the command's one line says what happened. What else comes here, and an
    interruption that no handler of ours is left to send again on, goes to `previous` (which prints it).
    """

    def hook(unraisable) -> None:
        pending = is_pending(unraisable.exc_value)
        number = _signal_to_send_again(unraisable.exc_value) if pending else None
        if number is not None:
            send_again(number)
        elif pending or not collecting_what_it_cut_short():
            previous(unraisable)

    return hook


def _signal_to_send_again(interruption: KeyboardInterrupt) -> int | None:
    if signal.getsignal(signal.SIGINT) is _on_sigint:
        return signal.SIGINT  # its handler raises the pending interruption, a SIGTERM's too
    if isinstance(interruption, Terminated) and threading.current_thread() is threading.main_thread():
        # Ctrl-C is ignored (a background job): SIGTERM's handler, which ignores SIGTERM once it has run,
        # goes back for this one; it is the same SIGTERM, not a second one.
        signal.signal(signal.SIGTERM, _on_sigterm)
        return signal.SIGTERM
    return None


# The error handler stdout and stderr print with: a path's undecodable bytes as they came, the rest escaped.
OUTPUT_ERRORS = "digit-recognizer-output"


def _escape_unencodable(error: UnicodeError):
    # Python decodes a path's undecodable bytes to lone surrogates (surrogateescape): those go out as
    # the same bytes, so the console shows the name it was given; any other character becomes `\xe9`.
    if isinstance(error, UnicodeEncodeError):
        chunk = error.object[error.start : error.end]
        if all(0xDC80 <= ord(char) <= 0xDCFF for char in chunk):
            return bytes(ord(char) - 0xDC00 for char in chunk), error.end
    return codecs.backslashreplace_errors(error)


codecs.register_error(OUTPUT_ERRORS, _escape_unencodable)


def robust_output() -> None:
    """Make stdout and stderr print any text: under `LC_ALL=C` without UTF-8 mode they are ASCII and strict."""
    for stream in (sys.stdout, sys.stderr):
        # A stream replaced by a caller (a StringIO) may not be reconfigurable; it takes any text anyway.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=OUTPUT_ERRORS)


def run_command(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)` and return its exit status, ending every way as the module docstring says."""
    previous = {}
    # Python lets only the main thread install a signal handler.
    if threading.current_thread() is threading.main_thread():
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _on_sigterm)
        # Ctrl-C that whoever started the command ignores (a background job, nohup) stays ignored.
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, _on_sigint)
    previous_hook = sys.unraisablehook
    if previous:
        sys.unraisablehook = _unraisable_hook(previous_hook)
    forget_interruption()
    streams = sys.stdout, sys.stderr
    try:
        robust_output()
        # None where the process was started without them (`>&-`, a daemon).
        sys.stdout, sys.stderr = (NoOutput() if stream is None else GuardedOutput(stream) for stream in streams)
        quiet_tensorflow_logs()
        status = main(argv)
        try:
            flush_output()  # here, where a closed output is told as one; at the exit Python would print it
        except OutputClosed:
            raise OutputClosed("the command finished; the rest of its output was not read") from None
        return status
    except USER_ERRORS as error:
        tell(user_error_message(error), streams)
        return getattr(error, "exit_code", EXIT_USER)
    except KeyboardInterrupt as interruption:
        if isinstance(interruption, OutputClosed):
            discard(streams[0])
        tell(interruption_message(interruption), streams)
        return getattr(interruption, "exit_code", EXIT_INTERRUPTED)
    except SystemExit:  # argparse's, after --help: what it printed may meet a closed output at Python's exit
        try:
            flush_output()
        except OutputClosed:
            discard(streams[0])
        raise
    finally:
        sys.stdout, sys.stderr = streams
        stop_sending_again()  # before the handlers go: a signal sent late must find ours, which then do nothing
        if interruption_pending():
            # The command has ended and said so: a second Ctrl-C while it collects must not end it with a traceback.
            for number in previous:
                signal.signal(number, signal.SIG_IGN)
            collect_what_it_cut_short()
        for number, handler in previous.items():
            signal.signal(number, handler)
        sys.unraisablehook = previous_hook
        forget_interruption()


def flush_output() -> None:
    sys.stdout.flush()
    sys.stderr.flush()


def tell(line: str, streams) -> None:
    """The boundary's one line, on the command's own stderr; a stderr closed too (`2>&1 | head`) breaks nothing."""
    stderr = streams[1]
    if stderr is None:
        return
    try:
        print(line, file=stderr, flush=True)
    except OSError:
        discard(stderr)


def discard(stream) -> None:
    """Point a closed output's file descriptor at the null device, so that Python's flush at exit fails no more."""
    if stream is None:
        return
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor (a test's capture)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, descriptor)
    os.close(null)


def exit_process(status: int) -> NoReturn:
    """End the process with `status`, a command's: its work is done, and so are its signals.

    The libraries' teardown after the last line (about a second, TensorFlow's) runs once Python has given
    Ctrl-C and SIGTERM back to the system, which would end the process there without a line, and with
    the signal's status instead of the command's.
    """
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    sys.exit(status)


def quiet_tensorflow_logs() -> None:
    """Before TensorFlow loads: keep its C++ and Python logs to real errors.

    Level 3 hides `failed call to cuInit` and the `NodeDef mentions attribute`
    lines; the lines written before the level applies are `import_tensorflow`'s job.
    """
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # `tf.function retracing` (with --plain --folds 5) and other notices go through this logger.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def import_tensorflow():
    """Import TensorFlow with its start-up lines on fd 2 held back; any other line is passed on.

    TensorFlow 2.21 writes absl's banner and `port.cc`/`cudart_stub.cc` lines from
    C++ before `TF_CPP_MIN_LOG_LEVEL` takes effect, so only catching fd 2 hides them.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    quiet_tensorflow_logs()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved_stderr = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
            from tensorflow import keras  # noqa: F401  (Keras' own start-up lines come with its first import)
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip() and not TENSORFLOW_NOISE.match(line):
                    print(line, file=sys.stderr)
    tensorflow.get_logger().setLevel(logging.ERROR)
    return tensorflow
