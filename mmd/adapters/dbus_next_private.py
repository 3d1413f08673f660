"""Every use of dbus-next's private API, in one place, for the version it was written for.

dbus-next 0.2.3 (Debian 12 ships it as python3-dbus-next) gives a service no say in how a
method call is dispatched: it does not tell the implementation who called, and a raised
DBusError is sent as the reply but also re-raised into its reader, which logs a traceback.
``mmd.adapters.dbus_service.ControlBus`` changes both, through the bus's two dispatch hooks
(``_find_message_handler``, ``_make_method_handler``) and the (de)marshalling helpers of
``ServiceInterface``. Its introspection writes no property annotations either
(``AnnotatedProperty``).

Nothing else in mmd touches dbus-next's private names. ``tests/unit/adapters/
test_dbus_next_private.py`` checks each one against the installed library, so an upgrade
that changes them fails there first; pyproject.toml and debian/control pin the version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any, Protocol
from xml.etree import ElementTree

from dbus_next import introspection as intr
from dbus_next.aio.message_bus import MessageBus
from dbus_next.message import Message
from dbus_next.service import ServiceInterface

WRITTEN_FOR = "0.2.3"
"""The dbus-next release whose private API this module was written against."""

SendReply = Callable[[Message], None]
CallHandler = Callable[[Message, SendReply], None]


class ExportedMethod(Protocol):
    """What dbus-next keeps of a ``@method`` (its private ``_Method``), as used here."""

    name: str
    fn: Callable[..., Any]
    out_signature: str
    out_signature_tree: Any  # dbus-next's SignatureTree of out_signature


# dbus-next's untyped private functions, typed once here
_body_to_args: Callable[[Message], list[Any]] = ServiceInterface._msg_body_to_args
_result_to_body: Callable[[Any, Any], tuple[list[Any], list[int]]] = (
    ServiceInterface._fn_result_to_body
)
_default_handler: Callable[[MessageBus, Message], CallHandler | None] = (
    MessageBus._find_message_handler
)
_default_method_handler: Callable[[MessageBus, ServiceInterface, Any], CallHandler] = (
    MessageBus._make_method_handler
)


def installed_version() -> str:
    return metadata.version("dbus-next")


def call_arguments(message: Message) -> list[Any]:
    """The method's Python arguments from a call's body (fds put in place)."""
    return _body_to_args(message)


def method_return(method: ExportedMethod, call: Message, result: Any) -> Message:
    """The reply to ``call`` carrying what the implementation returned."""
    body, fds = _result_to_body(result, method.out_signature_tree)
    reply: Message = Message.new_method_return(call, method.out_signature, body, fds)
    return reply


class DispatchHooks(MessageBus):
    """A bus whose dispatch a subclass decides, through two public-named hooks.

    ``handler_for(message, default)``: the handler for a method call, given the one
    dbus-next would use (None: no such member; the bus answers UnknownMethod).
    ``method_handler(interface, method)``: the handler for a call of an exported method.
    """

    def handler_for(self, message: Message, default: CallHandler | None) -> CallHandler | None:
        return default

    def method_handler(self, interface: ServiceInterface, method: ExportedMethod) -> CallHandler:
        return _default_method_handler(self, interface, method)

    # dbus-next calls these two for every incoming method call
    def _find_message_handler(self, msg: Message) -> CallHandler | None:
        return self.handler_for(msg, _default_handler(self, msg))

    def _make_method_handler(self, interface: ServiceInterface, method: Any) -> CallHandler:
        return self.method_handler(interface, method)


class AnnotatedProperty(intr.Property):
    """A property whose introspection carries annotations (dbus-next 0.2.3 writes none)."""

    def __init__(self, plain: intr.Property, annotations: Mapping[str, str]) -> None:
        super().__init__(plain.name, plain.signature, plain.access)
        self.annotations = dict(annotations)

    def to_xml(self) -> ElementTree.Element:
        element: ElementTree.Element = super().to_xml()
        for name, value in self.annotations.items():
            annotation = ElementTree.SubElement(element, "annotation")
            annotation.set("name", name)
            annotation.set("value", value)
        return element
