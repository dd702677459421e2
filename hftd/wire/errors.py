"""The two error families of the wire layer (after h11).

`RemoteProtocolError`: the peer sent something out of protocol. The session
that received it is ended with the reason logged; the process carries on.
`LocalProtocolError`: we tried to send something out of protocol, a bug here.
"""


class RemoteProtocolError(Exception):
    """The peer violated the protocol; end its session, never crash."""


class LocalProtocolError(Exception):
    """This side tried to do something the protocol does not allow (a bug)."""
