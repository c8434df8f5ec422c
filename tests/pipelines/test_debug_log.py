"""The debug log works on a fresh machine: its folder (~/.local/state/firth by default) is made
when missing, and a log that cannot be written leaves the records on the terminal."""
import logging

from firth.pipelines.statistics.engines.dask import _log_to_file


def _restore(saved):
    logger = logging.getLogger("distributed")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        if handler not in saved:
            handler.close()
    for handler in saved:
        logger.addHandler(handler)


def test_the_log_folder_is_made_and_a_record_lands_in_the_file(tmp_path):
    path = tmp_path / "state" / "firth" / "debug.log"  # no such folder yet
    saved = _log_to_file(str(path))
    try:
        logging.getLogger("distributed").warning("heartbeat failed")
    finally:
        _restore(saved)
    assert "distributed WARNING: heartbeat failed" in path.read_text()


def test_an_unwritable_log_keeps_the_terminal(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the log's parent is a file: the folder cannot be made
    logger = logging.getLogger("distributed")
    before = list(logger.handlers)
    saved = _log_to_file(str(blocker / "debug.log"))
    assert saved == before and logger.handlers == before
