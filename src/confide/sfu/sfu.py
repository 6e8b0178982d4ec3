"""The selective forwarding unit: every participant's media on one UDP port.

Datagrams are told apart by their first byte (RFC 7983): STUN goes to the ICE
agent named in its USERNAME, DTLS and SRTP to the endpoint at that address. RTP
is forwarded by SSRC to every subscription without reading the payload; RTCP
is terminated here and answered (NACK from the packet cache, keyframe requests
passed on, receiver reports and REMB made here). No sockets: `datagram_received`
takes the bytes and `now`, and `transmit` is the one way out.

A transport may forward a known stream's RTP by itself (the C fast path): the SFU
tells it each stream's route with `learn_route`, withdraws them all with
`forget_routes` whenever one may be stale, and hears of what it forwarded through
`forwarded_by_transport`.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Callable
from typing import cast

import pylibsrtp

from .allocation import ideal_layer
from .bwe import IDLE_BITRATE
from .dtls import DtlsCertificate, DtlsRecordRejected, DtlsServerSession
from .endpoint import PACKET_COST, SEND_BURST, Endpoint
from .forwarder import Forwarded
from .ice import is_unicast_source, parse_stun, stun_username
from .router import PublishedStream, Route, Subscription, payload_type_map
from .rtp import (
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    RtpHeader,
    SenderReport,
    header_extension,
    is_rtcp,
    parse_compound,
    rewrite_payload_type,
    rtp_packet,
    serialize_compound,
)
from .sdp import (
    MID_EXTENSION,
    RID_EXTENSION,
    AnswerSection,
    Codec,
    SentStream,
    build_answer,
    parse_offer,
    supported_codecs,
)
from .vp8 import key_frame_size, parse_descriptor, write_descriptor

logger = logging.getLogger(__name__)

MAX_DATAGRAM_BYTES = 2048
REPORT_INTERVAL = 1.0
"""Seconds between the receiver reports and REMB the SFU sends each publisher."""
MAX_REPORT_BLOCKS = 31
MAX_NACKED_PER_PACKET = 64
MAX_NACKED_PER_DATAGRAM = 256
"""Sequence numbers one NACK packet, and one RTCP datagram, may ask for; the rest are
ignored (and counted): a browser asks for a few at a time."""
SRTP_REPLAY_WINDOW = 128
"""libsrtp protects nothing older than this behind the newest index it sent."""
RESEND_INTERVAL = 0.1
"""About a round trip: a packet asked for again sooner is a duplicate request."""

Address = tuple[str, int]
Target = tuple[pylibsrtp.Session, Address]
"""One receiver of a forwarded packet: its outbound SRTP session and address."""
Publication = tuple[int, dict[int, Codec], int, tuple[str, ...], int]
"""SSRC, payload types and clock rate of one stream a participant sends; for a
simulcast source, SSRC 0 and its rids and rid extension id."""


class Sfu:
    def __init__(self, *, public_ip: str, media_port: int, media_timeout: float = 8.0,
                 media_grace: float = 30.0) -> None:
        self.public_ip = public_ip
        self.media_port = media_port
        self.media_timeout = media_timeout
        """Seconds without an authenticated packet before a participant's media counts
        as interrupted: the others are told they are reconnecting."""
        self.media_grace = media_grace
        """Seconds without one before they count as gone. Until then their place,
        streams and subscriptions are kept, for a network that comes back or an ICE
        restart (a train through a tunnel, Wi-Fi handing over)."""
        self.certificate = DtlsCertificate()
        self.rtcp_ssrc = secrets.randbits(32)
        self.endpoints_by_ufrag: dict[str, Endpoint] = {}
        self.endpoints_by_address: dict[Address, Endpoint] = {}
        self.streams: dict[str, dict[str, PublishedStream]] = {}
        """Published streams by meeting id, then stream id."""
        self.counters: Counter[str] = Counter()
        self.transmit: Callable[[bytes, Address], None] = lambda data, address: None
        self.prepare_targets: Callable[[list[Target]], object] = lambda targets: targets
        self.fan_out: Callable[[bytes, object, bool], tuple[int, int]] = self._fan_out_one_by_one
        self.send_each: Callable[[list[bytes], pylibsrtp.Session, Address], tuple[int, int]] = (
            self._send_each_one_by_one)
        """Protects one packet for each prepared target and sends it; returns (failed,
        dropped). The transport replaces both with a batched way (fanout.py)."""
        self.on_endpoint_lost: Callable[[Endpoint, str], None] = lambda endpoint, reason: None
        self.on_endpoint_interrupted: Callable[[Endpoint, bool], None] = (
            lambda endpoint, interrupted: None)
        """Told when a participant's media stops (True) and when it is back (False)."""
        self.learn_route: Callable[[Address, int, pylibsrtp.Session, object, PublishedStream,
                                    set[str], bool], None] = lambda *args: None
        """(sender address, SSRC, its inbound session, prepared targets, stream, the
        sender's blocked kinds, whether the transport must hand back the plain packet)."""
        self.forget_routes: Callable[[], None] = lambda: None

    # Participants come and go (called by signalling).

    def add_endpoint(self, participant_id: str, meeting_id: str) -> Endpoint:
        endpoint = Endpoint(participant_id=participant_id, meeting_id=meeting_id)
        self.endpoints_by_ufrag[endpoint.ice.local_ufrag] = endpoint
        return endpoint

    def remove_endpoint(self, endpoint: Endpoint) -> bool:
        """Forget a participant's transport; True if streams others receive went away."""
        endpoint.closed = True
        had_streams = bool(endpoint.published)
        self._set_publications(endpoint, {})
        self._set_subscriptions(endpoint, {}, now=0.0)
        self.endpoints_by_ufrag.pop(endpoint.ice.local_ufrag, None)
        for address in [a for a, e in self.endpoints_by_address.items() if e is endpoint]:
            del self.endpoints_by_address[address]
        self.forget_routes()
        return had_streams

    def want_layers(self, endpoint: Endpoint, wanted: dict[str, int | None]) -> None:
        """The simulcast layer a receiver's view asks of each source it receives, by
        stream id (0 is the smallest, None for no video); sources not named keep what
        they had. It gets that layer, or the nearest one the publisher is sending, from
        a key frame."""
        for subscription in endpoint.subscriptions.values():
            source, forwarder = subscription.stream, subscription.forwarder
            if forwarder is None or source.id not in wanted:
                continue
            layer = wanted[source.id]
            if layer is None:
                if subscription.wanted_layer is not None:
                    forwarder.pause()
                subscription.wanted_layer = None
            else:
                subscription.wanted_layer = max(0, min(layer, len(source.rids) - 1))

    def set_view(self, endpoint: Endpoint, tiles: dict[str, int]) -> None:
        """What a receiver's page shows: stream id to the height of its tile in device
        pixels, 0 for off screen. Each simulcast source it receives goes to the smallest
        layer at least as tall as its tile (the largest if none is), or to no video."""
        endpoint.view = tiles
        wanted: dict[str, int | None] = {}
        for subscription in endpoint.subscriptions.values():
            source = subscription.stream
            if source.rids and source.id in tiles:
                wanted[source.id] = ideal_layer(source.layer_heights(), tiles[source.id])
        self.want_layers(endpoint, wanted)

    def simulcast_sources(self, meeting_id: str) -> list[PublishedStream]:
        return [s for s in self.streams.get(meeting_id, {}).values() if s.rids]

    def meeting_streams(self, meeting_id: str) -> list[PublishedStream]:
        return list(self.streams.get(meeting_id, {}).values())

    def negotiate(
        self,
        endpoint: Endpoint,
        offer_sdp: str,
        roles: dict[str, tuple[str, str | None]],
        now: float,
        may_publish: Callable[[str], bool] = lambda kind: True,
    ) -> tuple[str, bool]:
        """Answer an offer. `roles` maps mid to ('send', kind) or ('recv', stream id).

        Returns the answer SDP and whether this participant's published streams
        changed (so the others must be told). A kind `may_publish` refuses is
        answered inactive and noted in `endpoint.refused`. Raises ValueError for a
        bad offer.
        """
        offer = parse_offer(offer_sdp)
        if endpoint.ice.remote_ufrag and offer.remote_ufrag != endpoint.ice.remote_ufrag:
            # An ICE restart (RFC 8445 section 9): new credentials on both sides, the
            # same DTLS and SRTP, and the media address from the next nominated check.
            self.endpoints_by_ufrag.pop(endpoint.ice.local_ufrag, None)
            endpoint.ice.restart()
            self.endpoints_by_ufrag[endpoint.ice.local_ufrag] = endpoint
            self.counters["ice_restarts"] += 1
        endpoint.ice.remote_ufrag = offer.remote_ufrag
        if endpoint.dtls is None:
            fingerprints = [fp for alg, fp in offer.remote_fingerprints if alg == "sha-256"]
            endpoint.dtls = DtlsServerSession(self.certificate, fingerprints)
        meeting_streams = self.streams.get(endpoint.meeting_id, {})
        answers: list[AnswerSection] = []
        endpoint.refused = set()
        publications: dict[str, Publication] = {}
        subscriptions: dict[int, tuple[PublishedStream, str, dict[int, int]]] = {}
        for section in offer.sections:
            role = roles.get(section.mid)
            codecs = supported_codecs(section)
            if (
                role is None
                or not section.mid
                or not offer.is_offered(section)
                or not section.rtcp_mux
                or not codecs
            ):
                answers.append(AnswerSection(section.mid, "rejected"))
                continue
            action, target = role
            if action == "send":
                chosen = tuple(codecs[:1])
                wanted = "audio" if target == "audio" else "video"
                # Simulcast of VP8 only: the forwarder reads VP8's payload descriptor.
                rids = tuple(section.simulcast_rids) if chosen[0].name == "vp8" else ()
                sending = section.direction in ("sendonly", "sendrecv") and (
                    section.ssrcs or rids)
                if section.kind != wanted or target is None:
                    answers.append(AnswerSection(section.mid, "rejected"))
                elif sending and not may_publish(target):
                    endpoint.refused.add(target)
                    answers.append(AnswerSection(section.mid, "inactive", chosen))
                elif sending and target not in publications:
                    rid_extension = section.extensions.get(RID_EXTENSION, 0)
                    publications[target] = (
                        0 if rids else section.ssrcs[0],
                        {c.payload_type: c for c in chosen},
                        chosen[0].clock_rate,
                        rids,
                        rid_extension,
                    )
                    extensions = ((section.extensions[MID_EXTENSION], MID_EXTENSION),
                                  (rid_extension, RID_EXTENSION)) if rids else ()
                    answers.append(AnswerSection(section.mid, "recvonly", chosen,
                                                 simulcast=rids, extensions=extensions))
                else:
                    answers.append(AnswerSection(section.mid, "inactive", chosen))
                continue
            stream = meeting_streams.get(target) if target else None
            mapping = None
            if (
                stream is not None
                and stream.publisher is not endpoint
                and stream.media_kind == section.kind
                and section.direction in ("recvonly", "sendrecv")
                and stream.ssrc not in subscriptions
            ):
                mapping = payload_type_map(stream.codecs, codecs)
            if stream is None or mapping is None:
                answers.append(AnswerSection(section.mid, "inactive", tuple(codecs)))
                continue
            subscriptions[stream.ssrc] = (stream, section.mid, mapping)
            sent = SentStream(stream.ssrc, stream.publisher.participant_id, stream.id)
            answers.append(AnswerSection(section.mid, "sendonly", tuple(codecs), sent))
        changed = self._set_publications(endpoint, publications)
        self._set_subscriptions(endpoint, subscriptions, now)
        answer = build_answer(
            offer,
            answers,
            ice_ufrag=endpoint.ice.local_ufrag,
            ice_pwd=endpoint.ice.local_pwd,
            fingerprint=self.certificate.fingerprint,
            address=self.public_ip,
            port=self.media_port,
            session_id=endpoint.sdp_session_id,
            session_version=endpoint.next_sdp_version(),
        )
        return answer, changed

    def _set_publications(
        self, endpoint: Endpoint, wanted: dict[str, Publication]
    ) -> bool:
        changed = False
        meeting_streams = self.streams.setdefault(endpoint.meeting_id, {})
        for kind, stream in list(endpoint.published.items()):
            if kind in wanted and (
                (wanted[kind][3], wanted[kind][4]) == (stream.rids, stream.rid_extension)
                if stream.rids else wanted[kind][0] == stream.ssrc
            ):
                continue
            changed = True
            self.forget_routes()
            del endpoint.published[kind]
            for layer in stream.layer_streams():
                endpoint.published_by_ssrc.pop(layer.ssrc, None)
            meeting_streams.pop(stream.id, None)
            for subscription in stream.subscriptions:
                subscription.subscriber.subscriptions.pop(stream.ssrc, None)
            stream.subscriptions.clear()
        for kind, (ssrc, codecs, clock_rate, rids, rid_extension) in wanted.items():
            if kind in endpoint.published:
                continue
            changed = True
            stream = PublishedStream(
                id=f"{endpoint.participant_id}:{kind}",
                kind=kind,
                # A simulcast source's receivers see one SSRC of the SFU's choosing.
                ssrc=secrets.randbits(32) if rids else ssrc,
                publisher=endpoint,
                codecs=codecs,
                clock_rate=clock_rate,
                rids=rids,
                rid_extension=rid_extension,
            )
            endpoint.published[kind] = stream
            if not rids:  # a source's layers are added as their packets name them
                endpoint.published_by_ssrc[ssrc] = stream
            meeting_streams[stream.id] = stream
        if not meeting_streams:
            self.streams.pop(endpoint.meeting_id, None)
        return changed

    def _set_subscriptions(
        self,
        endpoint: Endpoint,
        wanted: dict[int, tuple[PublishedStream, str, dict[int, int]]],
        now: float,
    ) -> None:
        for subscription in endpoint.subscriptions.values():
            subscription.stream.route = None
        for stream, _, _ in wanted.values():
            stream.route = None
        self.forget_routes()
        for ssrc, subscription in list(endpoint.subscriptions.items()):
            entry = wanted.get(ssrc)
            unchanged = entry is not None and entry[:2] == (subscription.stream, subscription.mid)
            if entry is not None and unchanged:
                subscription.payload_type_map = entry[2]
                continue
            del endpoint.subscriptions[ssrc]
            if subscription in subscription.stream.subscriptions:
                subscription.stream.subscriptions.remove(subscription)
        for ssrc, (stream, mid, mapping) in wanted.items():
            if ssrc in endpoint.subscriptions:
                continue
            subscription = Subscription(stream, endpoint, mid, mapping)
            endpoint.subscriptions[ssrc] = subscription
            stream.subscriptions.append(subscription)
            if stream.rids and stream.id in endpoint.view:
                layer = ideal_layer(stream.layer_heights(), endpoint.view[stream.id])
                subscription.wanted_layer = layer
                if layer is None:
                    assert subscription.forwarder is not None
                    subscription.forwarder.pause()
            # A new receiver cannot decode until the next keyframe.
            if stream.media_kind == "video":
                self._request_keyframe(stream, now)

    # Datagrams in.

    def datagram_received(self, data: bytes, address: Address, now: float) -> None:
        if len(data) > MAX_DATAGRAM_BYTES or not data:
            self.counters["dropped_oversize"] += 1
            return
        first = data[0]
        try:
            if first < 4:
                self._handle_stun(data, address, now)
            elif 20 <= first < 64:
                self._handle_dtls(data, address, now)
            elif 128 <= first < 192:
                self._handle_srtp(data, address, now)
            else:
                self.counters["dropped_unknown"] += 1
        except pylibsrtp.Error as exc:
            # Not malformed: under loss, replay or after a session change SRTP can fail
            # to authenticate; counted apart, so that malformed input stands out.
            self.counters["dropped_srtp_auth"] += 1
            logger.debug("dropped a datagram: %s", exc)
        except ValueError as exc:
            self.counters["dropped_malformed"] += 1
            logger.debug("dropped a datagram: %s", exc)
        except Exception:  # A bug here must not take down other participants.
            self.counters["errors"] += 1
            logger.exception("error handling a datagram")

    def _handle_stun(self, data: bytes, address: Address, now: float) -> None:
        """Answer a connectivity check; the first, and nominated ones, set where this
        participant's media goes."""
        request = parse_stun(data)
        ufrag = stun_username(request)
        endpoint = self.endpoints_by_ufrag.get(ufrag) if ufrag else None
        if endpoint is None or not endpoint.ice.remote_ufrag:
            self.counters["dropped_stun_unknown"] += 1
            return
        if not is_unicast_source(address):
            # Port 0 or a broadcast address: no one could send media back to it.
            self.counters["dropped_stun_bad_source"] += 1
            return
        response = endpoint.ice.handle_request(request, address, now)
        endpoint.last_packet_at = now
        if self.endpoints_by_address.setdefault(address, endpoint) is not endpoint:
            # The address now belongs to someone else: no route may use the old owner's key.
            self.endpoints_by_address[address] = endpoint
            self.forget_routes()
        nominated = endpoint.ice.nominated_address
        if endpoint.address != nominated:
            # A few moves settle ICE; after that, one a second, so that a participant
            # cannot keep everyone's routes being rebuilt.
            if endpoint.address_changes.take(now):
                endpoint.address = nominated
                self._forget_routes_of(endpoint)
            else:
                self.counters["address_changes_refused"] += 1
        self.counters["stun_answered"] += 1
        self.transmit(response, address)

    def _handle_dtls(self, data: bytes, address: Address, now: float) -> None:
        endpoint = self.endpoints_by_address.get(address)
        if endpoint is None or endpoint.dtls is None:
            self.counters["dropped_dtls_unknown"] += 1
            return
        try:
            replies = endpoint.dtls.receive(data)
        except DtlsRecordRejected:
            # Forged or broken, and not the handshake's: the handshake goes on.
            self.counters["dropped_dtls_bad_record"] += 1
            return
        except ValueError:
            # A failed handshake ends this participant's media, no one else's.
            self.on_endpoint_lost(endpoint, "dtls-failed")
            raise
        if not replies and endpoint.srtp_in is not None and not endpoint.dtls.closed:
            # OpenSSL drops bad records silently (RFC 6347 4.1.2.7); count them.
            self.counters["dropped_dtls_ignored"] += 1
        for reply in replies:
            self.transmit(reply, address)
        if endpoint.dtls.keys is not None and endpoint.srtp_in is None:
            endpoint.start_srtp(endpoint.dtls.keys)
            self._forget_routes_of(endpoint)
            endpoint.last_packet_at = now
            for stream in endpoint.published.values():
                if stream.media_kind == "video":
                    self._request_keyframe(stream, now)
            for subscription in endpoint.subscriptions.values():
                if subscription.stream.media_kind == "video":
                    self._request_keyframe(subscription.stream, now)
        if endpoint.dtls.closed:
            self.on_endpoint_lost(endpoint, "disconnected")

    def _handle_srtp(self, data: bytes, address: Address, now: float) -> None:
        endpoint = self.endpoints_by_address.get(address)
        if endpoint is None or endpoint.srtp_in is None:
            self.counters["dropped_srtp_unknown"] += 1
            return
        if is_rtcp(data):
            plain = endpoint.srtp_in.unprotect_rtcp(data)
            endpoint.last_packet_at = now
            self._handle_rtcp(endpoint, plain, now)
            return
        packet = endpoint.srtp_in.unprotect(data)
        endpoint.last_packet_at = now
        if len(packet) < 12:
            raise ValueError("RTP packet too short")
        ssrc = int.from_bytes(packet[8:12], "big")
        stream = endpoint.published_by_ssrc.get(ssrc)
        if stream is None:
            stream = self._learn_layer(endpoint, ssrc, packet)
        if stream is None:
            self.counters["dropped_unknown_ssrc"] += 1
            return
        if stream.kind in endpoint.blocked:
            self.counters["dropped_blocked_by_host"] += 1
            return
        if not endpoint.sending.take(now, len(packet) + PACKET_COST):
            self.counters["dropped_over_send_rate"] += 1
            return
        if endpoint.over_send_rate and endpoint.sending.tokens >= SEND_BURST / 2:
            endpoint.over_send_rate = False  # back within its rate: the fast path again
        sequence_number = (packet[2] << 8) | packet[3]
        stream.stats.add(sequence_number, int.from_bytes(packet[4:8], "big"), now)
        if stream.losses is not None:
            self._ask_publisher(stream, stream.losses.received(sequence_number, now))
        if stream.cache is not None:
            stream.cache.put(sequence_number, packet)
        self.counters["rtp_received"] += 1
        stream.last_packet_at = now
        if stream.source is not None:
            self._forward_layer(stream, packet, now)
            return
        route = self._route(stream)
        if route.size:
            stream.forwarded_packets += 1
            stream.forwarded_octets += len(packet) - 12
            self.counters["rtp_forwarded"] += route.size
            self._count_fan_out(self.fan_out(packet, route.targets, False))
            if not endpoint.over_send_rate:
                self.learn_route(address, ssrc, endpoint.srtp_in, route.targets, stream,
                                 endpoint.blocked,
                                 stream.cache is not None or bool(route.rewritten))
        for subscription in route.rewritten:
            self._forward(subscription, packet)

    def _learn_layer(self, endpoint: Endpoint, ssrc: int, packet: bytes) -> PublishedStream | None:
        """A packet on an SSRC not seen before: a simulcast layer, if its rid extension
        names one of a source's layers (RFC 8852). Then the SSRC is that layer's."""
        for source in endpoint.published.values():
            if not source.rids:
                continue
            rid = header_extension(packet, source.rid_extension)
            if rid is None:
                continue
            try:
                index = source.rids.index(rid.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                return None
            old = source.layers[index]
            if old is not None:
                # The publisher numbers that layer afresh (a new encoder): follow it.
                endpoint.published_by_ssrc.pop(old.ssrc, None)
            layer = PublishedStream(
                id=f"{source.id}/{source.rids[index]}", kind=source.kind, ssrc=ssrc,
                publisher=endpoint, codecs=source.codecs, clock_rate=source.clock_rate,
                source=source, layer=index,
            )
            source.layers[index] = layer
            endpoint.published_by_ssrc[ssrc] = layer
            return layer
        return None

    def _forward_layer(self, layer: PublishedStream, packet: bytes, now: float) -> None:
        """One packet of a simulcast layer, to each receiver whose forwarder takes it,
        renumbered as that receiver's one continuous stream."""
        source = layer.source
        assert source is not None
        header = RtpHeader.parse(packet)
        payload = packet[header.header_length:len(packet) - header.padding_length]
        descriptor = parse_descriptor(payload) if payload else None
        if descriptor is not None and descriptor.key_frame:
            size = key_frame_size(payload, descriptor)
            if size is not None:
                layer.height = size[1]
        # Per packet, not per receiver: the parse above, and the layer each wanted
        # layer maps to while some are not flowing.
        targets: dict[int, int] = {}
        for subscription in source.subscriptions:
            forwarder = subscription.forwarder
            assert forwarder is not None
            wanted = subscription.wanted_layer
            if wanted is None:
                continue  # off screen
            target = targets.get(wanted)
            if target is None:
                target = targets[wanted] = source.available_layer(wanted, now)
            if target != forwarder.target_spatial:
                forwarder.set_target(target, forwarder.target_temporal)
            sent = forwarder.forward(layer.layer, header.sequence_number, header.timestamp,
                                     header.marker, payload, now, descriptor)
            asked = forwarder.wants_key_frame(now)
            if asked is not None and (wanted_layer := source.layers[asked]) is not None:
                self._request_keyframe(wanted_layer, now)
            if sent is None:
                continue
            subscription.log_sent(layer.layer, header.sequence_number, sent)
            self._send_forwarded(subscription, header.payload_type, sent)

    def _send_forwarded(self, subscription: Subscription, payload_type: int,
                        sent: Forwarded) -> None:
        subscriber = subscription.subscriber
        if subscriber.srtp_out is None or subscriber.address is None:
            return
        if subscription.payload_type_map:
            mapped = subscription.payload_type_map.get(payload_type)
            if mapped is None:
                return
            payload_type = mapped
        packet = rtp_packet(payload_type=payload_type, sequence_number=sent.sequence_number,
                            timestamp=sent.timestamp, ssrc=sent.ssrc, marker=sent.marker,
                            payload=sent.payload)
        subscription.add_sent(len(sent.payload))
        self.counters["rtp_forwarded"] += 1
        self.transmit(subscriber.srtp_out.protect(packet), subscriber.address)

    def forwarded_by_transport(
        self,
        records: list[tuple[PublishedStream, int, int, int, bytes | None, float]],
        copies: int,
        failed: int = 0,
        dropped: int = 0,
        unauthentic: int = 0,
    ) -> None:
        """What the transport forwarded on learned routes, as (stream, sequence number,
        timestamp, length, plain packet if asked for, arrival time): the bookkeeping
        `_handle_srtp` does for the packets it forwards itself. `failed` and `dropped`
        count copies as a fan-out does; `unauthentic`, packets that did not unprotect."""
        if records:
            self.counters["rtp_received"] += len(records)
            self.counters["rtp_received_fast_path"] += len(records)
            self.counters["rtp_forwarded"] += copies
        if failed or dropped:
            self._count_fan_out((failed, dropped))
        if unauthentic:
            self.counters["dropped_srtp_auth"] += unauthentic
        for stream, sequence_number, timestamp, length, packet, now in records:
            publisher = stream.publisher
            publisher.last_packet_at = now
            publisher.sending.charge(now, length + PACKET_COST)
            if stream.losses is not None:
                self._ask_publisher(stream, stream.losses.received(sequence_number, now))
            if publisher.sending.tokens < 0 and not publisher.over_send_rate:
                # Sending more than it may: Python sees its next packets, and drops them.
                publisher.over_send_rate = True
                self.forget_routes()
            stream.stats.add(sequence_number, timestamp, now)
            stream.forwarded_packets += 1
            stream.forwarded_octets += length - 12
            if packet is None:
                continue
            if stream.cache is not None:
                stream.cache.put(sequence_number, packet)
            # As in datagram_received: one packet's failure is that packet's alone.
            try:
                for subscription in self._route(stream).rewritten:
                    self._forward(subscription, packet)
            except (ValueError, pylibsrtp.Error) as exc:
                self.counters["dropped_malformed"] += 1
                logger.debug("dropped a datagram: %s", exc)
            except Exception:
                self.counters["errors"] += 1
                logger.exception("error forwarding a datagram")

    def _route(self, stream: PublishedStream) -> Route:
        if stream.route is None:
            self._build_route(stream)
        assert stream.route is not None
        return stream.route

    def _forget_routes_of(self, endpoint: Endpoint) -> None:
        """Its address or key changed: the streams it receives build their routes
        again, and no one else's do."""
        for subscription in endpoint.subscriptions.values():
            subscription.stream.route = None
        self.forget_routes()

    def _count_fan_out(self, result: tuple[int, int]) -> None:
        failed, dropped = result
        if failed:
            self.counters["errors"] += failed
        if dropped:
            self.counters["dropped_send_buffer_full"] += dropped

    def _build_route(self, stream: PublishedStream) -> None:
        """Done once per change in who receives what, not per packet."""
        targets: list[Target] = []
        rewritten: list[Subscription] = []
        for subscription in stream.subscriptions:
            subscription.leave_route()
            if subscription.payload_type_map:
                rewritten.append(subscription)
                continue
            subscriber = subscription.subscriber
            if subscriber.srtp_out is None or subscriber.address is None:
                continue
            subscription.join_route()
            targets.append((subscriber.srtp_out, subscriber.address))
        stream.route = Route(self.prepare_targets(targets), len(targets), tuple(rewritten))

    def _fan_out_one_by_one(self, packet: bytes, targets: object, rtcp: bool) -> tuple[int, int]:
        for session, address in cast(list[Target], targets):
            self.transmit(session.protect_rtcp(packet) if rtcp else session.protect(packet),
                          address)
        return 0, 0

    def _send_each_one_by_one(self, packets: list[bytes], session: pylibsrtp.Session,
                              address: Address) -> tuple[int, int]:
        failed = 0
        for packet in packets:
            try:
                self.transmit(session.protect(packet), address)
            except (pylibsrtp.Error, ValueError):
                failed += 1
        return failed, 0

    def _forward(self, subscription: Subscription, packet: bytes) -> None:
        """One receiver that numbers the codec differently: its own rewritten copy."""
        subscriber = subscription.subscriber
        if subscriber.srtp_out is None or subscriber.address is None:
            return
        if subscription.payload_type_map:
            mapped = subscription.payload_type_map.get(packet[1] & 0x7F)
            if mapped is None:
                return
            packet = rewrite_payload_type(packet, mapped)
        subscription.add_sent(len(packet) - 12)
        self.counters["rtp_forwarded"] += 1
        self.transmit(subscriber.srtp_out.protect(packet), subscriber.address)

    def _handle_rtcp(self, endpoint: Endpoint, data: bytes, now: float) -> None:
        nack_room = MAX_NACKED_PER_DATAGRAM
        for packet in parse_compound(data):
            if isinstance(packet, SenderReport):
                stream = endpoint.published_by_ssrc.get(packet.ssrc)
                if stream is not None:
                    stream.stats.sender_report_received(packet.ntp_timestamp, now)
                    self._relay_sender_report(stream, packet)
                self._take_reports(endpoint, packet.reports)
            elif isinstance(packet, ReceiverReport):
                self._take_reports(endpoint, packet.reports)
            elif isinstance(packet, (Pli, Fir)):
                if isinstance(packet, Pli):
                    media_ssrcs = [packet.media_ssrc]
                else:
                    media_ssrcs = [ssrc for ssrc, _ in packet.entries]
                for ssrc in media_ssrcs:
                    subscription = endpoint.subscriptions.get(ssrc)
                    if subscription is not None:
                        self._request_keyframe(self._layer_sent(subscription), now)
            elif isinstance(packet, Nack):
                subscription = endpoint.subscriptions.get(packet.media_ssrc)
                lost = packet.lost[:min(MAX_NACKED_PER_PACKET, nack_room)]
                if len(lost) < len(packet.lost):
                    self.counters["nack_ignored"] += len(packet.lost) - len(lost)
                nack_room -= len(lost)
                if subscription is not None and lost:
                    if subscription.forwarder is not None:
                        self._answer_layer_nack(subscription, lost, now)
                    else:
                        self._answer_nack(subscription, lost, now)

    def _take_reports(self, endpoint: Endpoint, reports: list) -> None:  # type: ignore[type-arg]
        for block in reports:
            subscription = endpoint.subscriptions.get(block.ssrc)
            if subscription is not None and subscription.stream.media_kind == "video":
                subscription.estimate.update(block.fraction_lost)

    def _answer_nack(self, subscription: Subscription, lost: list[int], now: float) -> None:
        """Send again what a receiver lost: each packet once a round trip, within the
        receiver's retransmission budget, and only while SRTP can still protect it."""
        stream = subscription.stream
        missing: list[int] = []
        resend: list[bytes] = []
        newest = stream.stats.max_sequence
        resent_at = subscription.resent_at
        for sequence_number in lost:
            if (newest - sequence_number) & 0xFFFF >= SRTP_REPLAY_WINDOW:
                # libsrtp refuses to protect an index this far behind what it has sent.
                self.counters["nack_too_old"] += 1
                continue
            if now - resent_at.get(sequence_number, -1.0) < RESEND_INTERVAL:
                self.counters["nack_repeated"] += 1
                continue
            packet = stream.cache.get(sequence_number) if stream.cache is not None else None
            if packet is None:
                missing.append(sequence_number)
                continue
            if not subscription.retransmit_bytes.take(now, len(packet)):
                self.counters["nack_over_budget"] += 1
                continue
            resent_at[sequence_number] = now
            if subscription.payload_type_map:
                mapped = subscription.payload_type_map.get(packet[1] & 0x7F)
                if mapped is None:
                    continue
                packet = rewrite_payload_type(packet, mapped)
            resend.append(packet)
        subscriber = subscription.subscriber
        if resend and subscriber.srtp_out is not None and subscriber.address is not None:
            # One call for the whole answer: protected and sent in batches in C.
            self.counters["nack_answered"] += len(resend)
            self.counters["rtp_forwarded"] += len(resend)
            for packet in resend:
                subscription.add_sent(len(packet) - 12)
            self._count_fan_out(self.send_each(resend, subscriber.srtp_out, subscriber.address))
        if len(resent_at) > 2 * SRTP_REPLAY_WINDOW:
            for old in [s for s, t in resent_at.items() if now - t >= RESEND_INTERVAL]:
                del resent_at[old]
        if missing:
            # Not in the cache: the publisher may still have it.
            self._send_rtcp(stream.publisher, [Nack(self.rtcp_ssrc, stream.ssrc, missing)])

    def _answer_layer_nack(self, subscription: Subscription, lost: list[int],
                           now: float) -> None:
        """As _answer_nack, for a simulcast receiver: each packet rebuilt as it was sent,
        from the layer's cache and what the sent log kept of its numbers."""
        source = subscription.stream
        resent_at = subscription.resent_at
        for sequence_number in lost:
            sent = subscription.logged(sequence_number)
            if sent is None:
                self.counters["nack_too_old"] += 1
                continue
            if now - resent_at.get(sequence_number, -1.0) < RESEND_INTERVAL:
                self.counters["nack_repeated"] += 1
                continue
            layer = source.layers[sent.layer]
            packet = None
            if layer is not None and layer.cache is not None:
                packet = layer.cache.get(sent.layer_sequence_number)
            if packet is None:
                if layer is not None:  # the publisher may still have it
                    self._send_rtcp(layer.publisher, [
                        Nack(self.rtcp_ssrc, layer.ssrc, [sent.layer_sequence_number])])
                continue
            if not subscription.retransmit_bytes.take(now, len(packet)):
                self.counters["nack_over_budget"] += 1
                continue
            resent_at[sequence_number] = now
            header = RtpHeader.parse(packet)
            payload = bytearray(packet[header.header_length:len(packet) - header.padding_length])
            descriptor = parse_descriptor(payload)
            if (sent.picture_id, sent.tl0picidx) != (descriptor.picture_id, descriptor.tl0picidx):
                write_descriptor(payload, descriptor, sent.picture_id, sent.tl0picidx)
            self.counters["nack_answered"] += 1
            self._send_forwarded(subscription, header.payload_type, Forwarded(
                ssrc=source.ssrc, sequence_number=sequence_number, timestamp=sent.timestamp,
                marker=sent.marker, payload=bytes(payload), key_frame=descriptor.key_frame))
        if len(resent_at) > 2 * SRTP_REPLAY_WINDOW:
            for old in [s for s, t in resent_at.items() if now - t >= RESEND_INTERVAL]:
                del resent_at[old]

    def _layer_sent(self, subscription: Subscription) -> PublishedStream:
        """Where a receiver's key frame request goes: the layer it is being sent (the
        one it waits for, before any), or the stream itself."""
        forwarder, source = subscription.forwarder, subscription.stream
        if forwarder is None:
            return source
        index = forwarder.current_spatial
        if index is None:
            index = forwarder.target_spatial
        return source.layers[index] or source

    def _ask_publisher(self, stream: PublishedStream, lost: list[int]) -> None:
        """Ask the publisher to send again what never reached us (upstream_loss.py)."""
        if not lost:
            return
        self.counters["nack_sent_upstream"] += len(lost)
        self._send_rtcp(stream.publisher, [Nack(self.rtcp_ssrc, stream.ssrc, lost)])

    def _relay_sender_report(self, stream: PublishedStream, report: SenderReport) -> None:
        """Receivers get our own sender report, with the publisher's clock mapping (for
        lip sync) and the counts of what we sent. Those on the batched route share one
        report, sent in one fan-out (a webinar's thousand receivers would otherwise
        stall the loop for every report); their counts are the route's, from before
        a late joiner arrived too. A receiver with its own rewritten copy gets its own."""
        def ours(packets: int, octets: int) -> SenderReport:
            return SenderReport(
                ssrc=stream.ssrc, ntp_timestamp=report.ntp_timestamp,
                rtp_timestamp=report.rtp_timestamp, packet_count=packets & 0xFFFFFFFF,
                octet_count=octets & 0xFFFFFFFF, reports=[],
            )

        source = stream.source
        if source is not None:
            # Each receiver of the layer it is being sent, in that receiver's numbers.
            for subscription in source.subscriptions:
                assert subscription.forwarder is not None
                timestamp = subscription.forwarder.timestamp_out(stream.layer,
                                                                 report.rtp_timestamp)
                if timestamp is not None:
                    self._send_rtcp(subscription.subscriber, [SenderReport(
                        ssrc=source.ssrc, ntp_timestamp=report.ntp_timestamp,
                        rtp_timestamp=timestamp,
                        packet_count=subscription.packets_sent & 0xFFFFFFFF,
                        octet_count=subscription.octets_sent & 0xFFFFFFFF, reports=[])])
            return
        route = self._route(stream)
        if route.size:
            shared = ours(stream.forwarded_packets, stream.forwarded_octets)
            self._count_fan_out(self.fan_out(serialize_compound([shared]), route.targets, True))
        for subscription in route.rewritten:
            own = ours(subscription.packets_sent, subscription.octets_sent)
            self._send_rtcp(subscription.subscriber, [own])

    def _request_keyframe(self, stream: PublishedStream, now: float) -> None:
        if stream.rids:
            return  # a simulcast source: each receiver's forwarder asks for its layer
        if stream.should_request_keyframe(now):
            self.counters["keyframe_requests"] += 1
            self._send_rtcp(stream.publisher, [Pli(self.rtcp_ssrc, stream.ssrc)])

    def _send_rtcp(self, endpoint: Endpoint, packets: list) -> None:  # type: ignore[type-arg]
        if endpoint.srtp_out is None or endpoint.address is None:
            return
        try:
            protected = endpoint.srtp_out.protect_rtcp(serialize_compound(packets))
        except pylibsrtp.Error:
            self.counters["errors"] += 1
            return
        self.transmit(protected, endpoint.address)

    # Time passes.

    def handle_timer(self, now: float) -> None:
        """Call every 100 ms or so: DTLS retransmits, reports, and lost participants."""
        for endpoint in list(self.endpoints_by_ufrag.values()):
            if endpoint.dtls is not None and endpoint.dtls.keys is None and endpoint.address:
                for datagram in endpoint.dtls.handle_timeout():
                    self.transmit(datagram, endpoint.address)
            if endpoint.last_packet_at is None:
                continue
            silent = now - endpoint.last_packet_at
            if silent > self.media_grace:
                self.counters["media_timeouts"] += 1
                self.on_endpoint_lost(endpoint, "timeout")
            elif (silent > self.media_timeout) != endpoint.interrupted:
                endpoint.interrupted = not endpoint.interrupted
                self.counters["media_interrupted" if endpoint.interrupted else "media_back"] += 1
                self.on_endpoint_interrupted(endpoint, endpoint.interrupted)
        for streams in self.streams.values():
            for published in streams.values():
                for stream in published.layer_streams():
                    if stream.losses is not None and stream.losses.missing:
                        self._ask_publisher(stream, stream.losses.due(now))
        for endpoint in list(self.endpoints_by_ufrag.values()):
            # Each on its own second, counted from when it first could: people join
            # at different times, so the reports spread over the timer's ticks
            # instead of stalling the loop for everyone at once.
            if now >= endpoint.next_report_at:
                endpoint.next_report_at = now + REPORT_INTERVAL
                self._send_reports(endpoint, now)

    def _send_reports(self, endpoint: Endpoint, now: float) -> None:
        if not endpoint.published or endpoint.srtp_out is None:
            return
        blocks = [
            block
            for stream in endpoint.published_by_ssrc.values()
            if (block := stream.stats.report_block(now)) is not None
        ][:MAX_REPORT_BLOCKS]
        packets: list = [ReceiverReport(ssrc=self.rtcp_ssrc, reports=blocks)]  # type: ignore[type-arg]
        video = [s for s in endpoint.published.values() if s.media_kind == "video"]
        if video:
            bitrate = 0
            for stream in video:
                estimates = [sub.estimate.bitrate for sub in stream.subscriptions]
                bitrate += min(estimates) if estimates else IDLE_BITRATE
            ssrcs = [layer.ssrc for stream in video for layer in stream.layer_streams()]
            packets.append(Remb(self.rtcp_ssrc, bitrate, ssrcs))
        self._send_rtcp(endpoint, packets)

