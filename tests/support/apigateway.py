"""API Gateway's side of an AWS (non-proxy) integration, for tests: the stack's Velocity mapping templates run through
a Velocity engine (airspeed) with the ``$input``, ``$util`` and ``$context`` objects API Gateway gives them, and
the rendered request sent to an SQS endpoint signed as the integration's role would sign it.

Only what our templates use is modelled, each as API Gateway documents it ("API Gateway mapping template and access
logging variable reference"): ``$input.body``, ``$input.json``/``$input.path`` (a dotted JSONPath), ``$util.urlEncode``,
``$util.escapeJavaScript`` (a Java string, so ``.replaceAll`` works on it), ``$util.parseJson``, ``$context.*``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any

import airspeed
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# Velocity 1.7, which API Gateway runs, reads no backslash escapes in string literals: "\\'" stays two backslashes
# and a quote (so AWS's own idiom .replaceAll("\\'","'") undoes escapeJavaScript's \'). airspeed would unescape them.
airspeed.StringLiteral.ESCAPED_CHAR = re.compile(r"(?!)")
airspeed.InterpolatedStringLiteral.ESCAPED_CHAR = re.compile(r"(?!)")


class JavaString(str):
    """What ``$util`` returns in API Gateway: a java.lang.String, with the methods templates call on it."""

    def replaceAll(self, regex: str, replacement: str) -> JavaString:
        return JavaString(re.sub(regex, replacement.replace("\\", "\\\\"), self))


def _path(document: Any, path: str) -> Any:
    if path == "$":
        return document
    assert path.startswith("$."), f"only dotted JSONPath is modelled, not {path!r}"
    for part in path[2:].split("."):
        document = document.get(part) if isinstance(document, dict) else None
    return document


class Input:
    def __init__(self, body: str) -> None:
        self.body = body

    def path(self, path: str) -> Any:
        return _path(json.loads(self.body), path)

    def json(self, path: str) -> str:
        return json.dumps(self.path(path))


class Util:
    @staticmethod
    def urlEncode(text: str) -> JavaString:
        # java.net.URLEncoder: space as "+", and only letters, digits and ".-*_" left as they are.
        return JavaString(urllib.parse.quote_plus(text, safe=".-*_"))

    @staticmethod
    def escapeJavaScript(text: str) -> JavaString:
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")
        escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
        return JavaString(escaped)

    @staticmethod
    def parseJson(text: str) -> Any:
        return json.loads(text)


def render(template: str, *, body: str = "", context: dict[str, Any] | None = None) -> str:
    """``template`` as API Gateway renders it for a request (or integration response) whose body is ``body``."""
    return airspeed.Template(template).merge({"input": Input(body), "util": Util(), "context": context or {}})


def sqs_json_response(xml_text: str) -> str:
    """SQS's query-protocol answer in the JSON form it sends when asked ``Accept: application/json`` (moto answers in
    XML only): the same element names, nested as objects."""

    def convert(element: ET.Element) -> Any:
        children = list(element)
        if not children:
            return element.text
        return {child.tag.split("}")[-1]: convert(child) for child in children}

    root = ET.fromstring(xml_text)
    return json.dumps({root.tag.split("}")[-1]: convert(root)})


def send_signed(url: str, form_body: str, *, region: str = "us-east-1") -> httpx.Response:
    """POST a rendered integration request to SQS, signed SigV4 as API Gateway signs it with the integration's role."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    request = AWSRequest("POST", url, data=form_body.encode(), headers=headers)
    SigV4Auth(Credentials("testing", "testing"), "sqs", region).add_auth(request)
    return httpx.post(url, content=form_body.encode(), headers=dict(request.headers), timeout=30)
