import io
import json
import logging

import structlog

from edge.log import configure, device_logger


def _lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_device_binding_and_redaction():
    out = io.StringIO()
    configure(level="debug", fmt="json", redact=["pin"], stream=out)
    try:
        device_logger("printer-1").info("connected", password="hunter2", pin="1234", url="socket://ops:s3cr3t@10.0.0.5:80")
        logging.getLogger("pymodbus").warning("library warning")
        (first, second) = _lines(out)
        assert first["device"] == "printer-1"
        assert first["event"] == "connected"
        assert first["password"] == "***"
        assert first["pin"] == "***"
        assert first["url"] == "socket://ops:***@10.0.0.5:80"
        assert first["level"] == "info"
        assert first["timestamp"].endswith("Z")
        assert second["event"] == "library warning"
        assert second["logger"] == "pymodbus"
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()


def test_console_format_is_readable_text():
    out = io.StringIO()
    configure(level="info", fmt="console", stream=out)
    try:
        device_logger("cam-1").warning("device unavailable", error="timed out")
        text = out.getvalue()
        assert "device unavailable" in text
        assert "device=cam-1" in text
        assert not text.lstrip().startswith("{")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
