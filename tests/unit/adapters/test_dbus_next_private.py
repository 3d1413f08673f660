"""dbus-next's private API as mmd.adapters.dbus_next_private relies on it, checked against the
installed library: an upgrade that renames or changes it fails here (issue 15)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar
from xml.etree import ElementTree

from dbus_next import introspection as intr
from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import MessageType, PropertyAccess
from dbus_next.message import Message
from dbus_next.message_bus import BaseMessageBus
from dbus_next.service import ServiceInterface, method

from mmd.adapters.dbus_next_private import (
    WRITTEN_FOR,
    AnnotatedProperty,
    CallHandler,
    DispatchHooks,
    ExportedMethod,
    call_arguments,
    installed_version,
    method_return,
)
from tests.support.dbus import LoopThread, PrivateBus

_disconnect: Callable[[MessageBus], None] = MessageBus.disconnect  # untyped in dbus-next
_method: Callable[..., Callable[[Callable[..., Any]], Any]] = method
_get_methods: Callable[[ServiceInterface], list[Any]] = ServiceInterface._get_methods


def test_the_installed_dbus_next_is_the_version_written_for() -> None:
    assert installed_version() == WRITTEN_FOR


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_private_names_exist_with_the_parameters_used() -> None:
    assert _parameters(ServiceInterface._msg_body_to_args) == ["msg"]
    assert _parameters(ServiceInterface._fn_result_to_body) == ["result", "signature_tree"]
    for bus_class in (BaseMessageBus, MessageBus):
        assert _parameters(bus_class._make_method_handler) == ["self", "interface", "method"]
    assert _parameters(BaseMessageBus._find_message_handler) == ["self", "msg"]
    # the two hooks are what the bus's dispatch calls, on self (so a subclass decides)
    assert "self._find_message_handler(msg)" in inspect.getsource(
        BaseMessageBus._process_message
    )
    assert "self._make_method_handler(interface, method)" in inspect.getsource(
        BaseMessageBus._find_message_handler
    )


class _Echo(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.example.Echo")

    @_method()
    def Echo(self, text: "s") -> "s":  # type: ignore[name-defined]  # noqa: F821, UP037
        return text


def test_body_and_result_helpers() -> None:
    call = Message(destination="a.b", path="/a", interface="a.b", member="M", signature="su",
                   body=["text", 7])  # fmt: skip
    assert call_arguments(call) == ["text", 7]

    [echo] = _get_methods(_Echo())
    exported: ExportedMethod = echo
    assert (exported.name, exported.out_signature) == ("Echo", "s")
    assert exported.fn(_Echo(), "x") == "x"
    reply = method_return(exported, Message(destination="a.b", path="/a", member="Echo",
                                            signature="s", body=["x"], serial=3), "x")
    assert (reply.message_type, reply.signature, reply.body, reply.reply_serial) == (
        MessageType.METHOD_RETURN, "s", ["x"], 3
    )


def test_annotated_property_serialises_its_annotations_in_the_interface() -> None:
    plain = intr.Property("State", "s", PropertyAccess.READ)
    interface = intr.Interface("a.b", properties=[AnnotatedProperty(plain, {"x.Y": "true"})])
    element = interface.to_xml()
    [annotation] = element.findall("./property/annotation")
    assert annotation.attrib == {"name": "x.Y", "value": "true"}
    assert ElementTree.tostring(element).count(b"<property") == 1


class _RecordingBus(DispatchHooks):
    seen: ClassVar[list[tuple[str, bool]]] = []

    def handler_for(self, message: Message, default: CallHandler | None) -> CallHandler | None:
        self.seen.append((f"call {message.member}", default is not None))
        return default

    def method_handler(self, interface: ServiceInterface, method: ExportedMethod) -> CallHandler:
        self.seen.append((f"method {method.name}", callable(method.fn)))
        return super().method_handler(interface, method)


def test_dispatch_goes_through_the_hooks_on_a_real_bus(bus: PrivateBus, loop: LoopThread) -> None:
    async def scenario() -> tuple[Message | None, Message | None]:
        new_bus: Callable[..., MessageBus] = _RecordingBus
        server = await new_bus(bus_address=bus.address).connect()
        client = await MessageBus(bus_address=bus.address).connect()
        name = str(server.unique_name)
        try:
            server.export("/echo", _Echo())
            echo = await client.call(Message(destination=name, path="/echo",
                                             interface="org.example.Echo", member="Echo",
                                             signature="s", body=["hello"]))  # fmt: skip
            unknown = await client.call(Message(destination=name, path="/echo",
                                                interface="org.example.Echo", member="Nope"))
            return echo, unknown
        finally:
            _disconnect(client)
            _disconnect(server)

    _RecordingBus.seen = []
    echo, unknown = loop.run(scenario())
    assert echo is not None and unknown is not None
    assert (echo.message_type, echo.body) == (MessageType.METHOD_RETURN, ["hello"])
    assert unknown.message_type == MessageType.ERROR
    assert unknown.error_name == "org.freedesktop.DBus.Error.UnknownMethod"
    assert _RecordingBus.seen == [("method Echo", True), ("call Echo", True), ("call Nope", False)]
