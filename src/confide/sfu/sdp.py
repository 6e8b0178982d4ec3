"""Parse the browser's SDP offer and write the SFU's answer (RFC 8829, RFC 8843).

Only what the SFU needs is read: per m-section its kind, mid, direction, codecs,
feedback, SSRCs, and the ICE and DTLS parameters. Anything malformed raises
`ValueError`; the caller replies `bad-sdp`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_SECTIONS = 512
MAX_LINE_CHARS = 4096
MAX_LINES = 65536
MAX_SECTION_ATTRIBUTES = 1024
"""Attribute lines one m-section may carry; Chrome's busiest video section has ~90."""
MAX_SECTION_SSRCS = 64
MAX_SIMULCAST_LAYERS = 3
"""Simulcast encodings the SFU takes from one source; an answer names only these."""

MID_EXTENSION = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID_EXTENSION = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
SIMULCAST_EXTENSIONS = (MID_EXTENSION, RID_EXTENSION)
"""What a simulcast publisher's packets carry until the SFU has learned which SSRC is
which layer (RFC 8852, RFC 8853): the only header extensions the SFU negotiates."""

_TOKEN = re.compile(r"^[A-Za-z0-9+/=_.:\-]{1,256}$")
_RID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")


@dataclass(frozen=True)
class Codec:
    payload_type: int
    name: str
    """Encoding name in lower case, e.g. 'opus', 'vp8', 'h264'."""
    clock_rate: int
    channels: int = 1
    fmtp: str = ""
    feedback: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """What must match for two payload types to carry the same bitstream."""
        if self.name == "h264":
            params = dict(
                p.split("=", 1) for p in self.fmtp.split(";") if "=" in p
            )
            mode = params.get("packetization-mode", "0")
            profile = params.get("profile-level-id", "42001f")[:4].lower()
            return f"h264/{profile}/{mode}"
        return f"{self.name}/{self.clock_rate}/{self.channels}"


@dataclass
class MediaSection:
    kind: str
    """'audio', 'video' or something the SFU rejects ('application')."""
    port: int
    protocol: str
    formats: list[str]
    mid: str = ""
    direction: str = "sendrecv"
    codecs: list[Codec] = field(default_factory=list)
    ssrcs: list[int] = field(default_factory=list)
    """Media SSRCs the browser will send, retransmission SSRCs excluded."""
    ice_ufrag: str = ""
    ice_pwd: str = ""
    fingerprints: list[tuple[str, str]] = field(default_factory=list)
    setup: str = ""
    rtcp_mux: bool = False
    rtcp_rsize: bool = False
    bundle_only: bool = False
    """Port 0 with `a=bundle-only` (RFC 8843 section 6): offered, not rejected.
    Firefox marks every section after the first this way in its first offer."""
    extensions: dict[str, int] = field(default_factory=dict)
    """Header extension URI to the id the browser gave it (`a=extmap`, RFC 8285)."""
    send_rids: list[str] = field(default_factory=list)
    """`a=rid:X send` lines, in order."""
    simulcast: list[str] = field(default_factory=list)
    """The rids of `a=simulcast:send` (RFC 8853), in the browser's order: each the
    first of its alternatives, a paused one (`~`) included."""

    @property
    def simulcast_rids(self) -> list[str]:
        """The simulcast layers the SFU takes: declared rids, at most
        MAX_SIMULCAST_LAYERS, and only with both extensions that name them offered."""
        if not all(uri in self.extensions for uri in SIMULCAST_EXTENSIONS):
            return []
        return [rid for rid in self.simulcast if rid in self.send_rids][:MAX_SIMULCAST_LAYERS]


@dataclass
class SessionDescription:
    sections: list[MediaSection]
    ice_ufrag: str = ""
    ice_pwd: str = ""
    fingerprints: list[tuple[str, str]] = field(default_factory=list)
    bundle: list[str] = field(default_factory=list)
    """The mids of the offer's BUNDLE group."""

    def is_offered(self, section: MediaSection) -> bool:
        """Whether a section is live: a non-zero port, or bundle-only within the group."""
        if section.port != 0:
            return True
        return section.bundle_only and bool(section.mid) and section.mid in self.bundle

    @property
    def remote_ufrag(self) -> str:
        return next((s.ice_ufrag for s in self.sections if s.ice_ufrag), self.ice_ufrag)

    @property
    def remote_pwd(self) -> str:
        return next((s.ice_pwd for s in self.sections if s.ice_pwd), self.ice_pwd)

    @property
    def remote_fingerprints(self) -> list[tuple[str, str]]:
        found = [fp for s in self.sections for fp in s.fingerprints]
        return found or self.fingerprints


def _token(value: str, what: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"SDP {what} is malformed")
    return value


def parse_offer(text: str) -> SessionDescription:
    session = SessionDescription(sections=[])
    rtpmaps: dict[int, tuple[str, int, int]] = {}
    fmtps: dict[int, str] = {}
    feedback: dict[int, list[str]] = {}
    fid_secondaries: set[int] = set()
    current: MediaSection | None = None

    def finish(section: MediaSection | None) -> None:
        if section is None:
            return
        for fmt in section.formats:
            if not fmt.isdigit():
                continue
            pt = int(fmt)
            if pt in rtpmaps:
                name, rate, channels = rtpmaps[pt]
                section.codecs.append(
                    Codec(pt, name, rate, channels, fmtps.get(pt, ""), tuple(feedback.get(pt, [])))
                )
        section.ssrcs = [s for s in section.ssrcs if s not in fid_secondaries]

    lines = text.replace("\r\n", "\n").split("\n")
    if not lines or not lines[0].startswith("v=0"):
        raise ValueError("SDP must start with v=0")
    if len(lines) > MAX_LINES:
        raise ValueError(f"SDP has more than {MAX_LINES} lines")
    attributes = 0
    for line in lines:
        if not line:
            continue
        if len(line) > MAX_LINE_CHARS:
            raise ValueError("SDP line is too long")
        if len(line) < 2 or line[1] != "=":
            raise ValueError("SDP line is not of the form x=value")
        key, value = line[0], line[2:]
        if key == "m":
            finish(current)
            parts = value.split()
            if len(parts) < 3 or not parts[1].isdigit():
                raise ValueError("SDP m= line is malformed")
            if len(session.sections) >= MAX_SECTIONS:
                raise ValueError(f"SDP has more than {MAX_SECTIONS} media sections")
            current = MediaSection(
                kind=parts[0], port=int(parts[1]), protocol=parts[2], formats=parts[3:]
            )
            session.sections.append(current)
            rtpmaps, fmtps, feedback, fid_secondaries = {}, {}, {}, set()
            attributes = 0
            continue
        if key != "a":
            continue
        attributes += 1
        if attributes > MAX_SECTION_ATTRIBUTES:
            raise ValueError(f"SDP section has more than {MAX_SECTION_ATTRIBUTES} attributes")
        name, _, arg = value.partition(":")
        if name == "ice-ufrag":
            if current:
                current.ice_ufrag = _token(arg, "ice-ufrag")
            else:
                session.ice_ufrag = _token(arg, "ice-ufrag")
        elif name == "ice-pwd":
            if current:
                current.ice_pwd = _token(arg, "ice-pwd")
            else:
                session.ice_pwd = _token(arg, "ice-pwd")
        elif name == "fingerprint":
            algorithm, _, digest = arg.partition(" ")
            fingerprint = (algorithm.lower(), _token(digest.strip(), "fingerprint").upper())
            if current:
                current.fingerprints.append(fingerprint)
            else:
                session.fingerprints.append(fingerprint)
        elif name == "group" and current is None:
            semantics, _, mids = arg.partition(" ")
            if semantics == "BUNDLE" and not session.bundle:
                session.bundle = [_token(mid, "BUNDLE mid") for mid in mids.split()]
        elif current is None:
            continue
        elif name == "bundle-only":
            current.bundle_only = True
        elif name == "mid":
            current.mid = _token(arg, "mid")
        elif name in ("sendrecv", "sendonly", "recvonly", "inactive"):
            current.direction = name
        elif name == "setup":
            current.setup = arg
        elif name == "rtcp-mux":
            current.rtcp_mux = True
        elif name == "rtcp-rsize":
            current.rtcp_rsize = True
        elif name == "rtpmap":
            pt_text, _, encoding = arg.partition(" ")
            parts = encoding.split("/")
            if not pt_text.isdigit() or len(parts) < 2 or not parts[1].isdigit():
                raise ValueError("SDP rtpmap is malformed")
            channels = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 1
            rtpmaps[int(pt_text)] = (parts[0].lower(), int(parts[1]), channels)
        elif name == "fmtp":
            pt_text, _, params = arg.partition(" ")
            if pt_text.isdigit():
                fmtps[int(pt_text)] = params
        elif name == "rtcp-fb":
            pt_text, _, kind = arg.partition(" ")
            if pt_text.isdigit():
                feedback.setdefault(int(pt_text), []).append(kind)
        elif name == "ssrc":
            ssrc_text = arg.split(" ", 1)[0]
            if not ssrc_text.isdigit() or int(ssrc_text) > 0xFFFFFFFF:
                raise ValueError("SDP ssrc is malformed")
            if int(ssrc_text) not in current.ssrcs:
                if len(current.ssrcs) >= MAX_SECTION_SSRCS:
                    raise ValueError(f"SDP section names more than {MAX_SECTION_SSRCS} SSRCs")
                current.ssrcs.append(int(ssrc_text))
        elif name == "extmap":
            id_text, _, rest = arg.partition(" ")
            ext_id, uri = id_text.split("/", 1)[0], rest.split(" ", 1)[0]
            if not ext_id.isdigit() or not 1 <= int(ext_id) <= 255 or not uri:
                raise ValueError("SDP extmap is malformed")
            if uri in SIMULCAST_EXTENSIONS:  # the others are never answered: not kept
                current.extensions.setdefault(uri, int(ext_id))
        elif name == "rid":
            rid, _, rest = arg.partition(" ")
            if not _RID.match(rid):
                raise ValueError("SDP rid is malformed")
            if rest.split(" ", 1)[0] == "send" and rid not in current.send_rids:
                if len(current.send_rids) >= MAX_SECTION_SSRCS:
                    raise ValueError("SDP section has too many rids")
                current.send_rids.append(rid)
        elif name == "simulcast":
            direction, _, streams = arg.partition(" ")
            if direction == "send" and not current.simulcast:
                for alternatives in streams.split(" ", 1)[0].split(";")[:MAX_SECTION_SSRCS]:
                    rid = alternatives.split(",", 1)[0].lstrip("~")
                    if not _RID.match(rid):
                        raise ValueError("SDP simulcast is malformed")
                    current.simulcast.append(rid)
        elif name == "ssrc-group":
            parts = arg.split()
            if parts and parts[0] == "FID" and len(parts) >= 3 and parts[2].isdigit():
                fid_secondaries.add(int(parts[2]))
    finish(current)
    if not session.sections:
        raise ValueError("SDP has no media sections")
    if not session.remote_ufrag or not session.remote_pwd:
        raise ValueError("SDP lacks ICE credentials")
    if not any(alg == "sha-256" for alg, _ in session.remote_fingerprints):
        raise ValueError("SDP lacks a sha-256 DTLS fingerprint")
    return session


SUPPORTED_FEEDBACK = {
    "audio": ("transport-cc",),
    "video": ("nack", "nack pli", "ccm fir", "goog-remb"),
}


def supported_codecs(section: MediaSection) -> list[Codec]:
    """The offered codecs the SFU can forward, in the browser's order of preference."""
    if section.kind == "audio":
        return [c for c in section.codecs if c.name == "opus" and c.clock_rate == 48000][:1]
    if section.kind == "video":
        found: list[Codec] = []
        for codec in section.codecs:
            if codec.name == "vp8" or (
                codec.name == "h264" and "packetization-mode=1" in codec.fmtp
            ):
                found.append(codec)
        return found
    return []


@dataclass(frozen=True)
class SentStream:
    """What to declare in the answer for one forwarded stream on a receive m-section."""

    ssrc: int
    stream_label: str
    track_label: str


@dataclass(frozen=True)
class AnswerSection:
    mid: str
    direction: str
    """'sendonly', 'recvonly', 'inactive', or 'rejected' (port 0)."""
    codecs: tuple[Codec, ...] = ()
    sent: SentStream | None = None
    simulcast: tuple[str, ...] = ()
    """The rids taken from a simulcast publisher (`a=simulcast:recv`)."""
    extensions: tuple[tuple[int, str], ...] = ()
    """Header extensions accepted, as (id, URI)."""


OPUS_RESILIENCE = {"useinbandfec": "1", "usedtx": "1"}
"""Asked of every Opus sender: in-band FEC (a lost packet is rebuilt from the next)
and DTX (silence costs almost nothing: in a meeting of 100, most are silent; its
empty frames pass the frame transform as they are, see e2ee-worker.js)."""


def with_opus_resilience(fmtp: str) -> str:
    """The offer's Opus parameters with OPUS_RESILIENCE added where missing."""
    params = [p.strip() for p in fmtp.split(";") if p.strip()]
    named = {p.split("=", 1)[0] for p in params}
    params += [f"{k}={v}" for k, v in OPUS_RESILIENCE.items() if k not in named]
    return ";".join(params)


def build_answer(
    offer: SessionDescription,
    sections: list[AnswerSection],
    *,
    ice_ufrag: str,
    ice_pwd: str,
    fingerprint: str,
    address: str,
    port: int,
    session_id: int,
    session_version: int = 1,
) -> str:
    """The answer, one m-section per offered one, all bundled on one transport."""
    bundled = [a.mid for a in sections if a.direction != "rejected"]
    lines = [
        "v=0",
        f"o=confide {session_id} {session_version} IN IP4 {address}",
        "s=-",
        "t=0 0",
        "a=ice-lite",
        f"a=group:BUNDLE {' '.join(bundled)}",
        "a=msid-semantic: WMS *",
    ]
    for offered, answer in zip(offer.sections, sections, strict=True):
        if answer.direction == "rejected":
            lines += [
                f"m={offered.kind} 0 {offered.protocol} {' '.join(offered.formats) or '0'}",
                "c=IN IP4 0.0.0.0",
                f"a=mid:{answer.mid}",
            ]
            continue
        pts = " ".join(str(c.payload_type) for c in answer.codecs)
        lines += [
            f"m={offered.kind} 9 UDP/TLS/RTP/SAVPF {pts}",
            "c=IN IP4 0.0.0.0",
            f"a=ice-ufrag:{ice_ufrag}",
            f"a=ice-pwd:{ice_pwd}",
            f"a=fingerprint:sha-256 {fingerprint}",
            "a=setup:passive",
            f"a=mid:{answer.mid}",
            f"a={answer.direction}",
            "a=rtcp-mux",
        ]
        if offered.rtcp_rsize:
            lines.append("a=rtcp-rsize")
        lines += [f"a=extmap:{ext_id} {uri}" for ext_id, uri in answer.extensions]
        for codec in answer.codecs:
            channels = f"/{codec.channels}" if codec.channels > 1 else ""
            encoding = "opus" if codec.name == "opus" else codec.name.upper()
            lines.append(f"a=rtpmap:{codec.payload_type} {encoding}/{codec.clock_rate}{channels}")
            fmtp = with_opus_resilience(codec.fmtp) if codec.name == "opus" else codec.fmtp
            if fmtp:
                lines.append(f"a=fmtp:{codec.payload_type} {fmtp}")
            for fb in codec.feedback:
                if fb in SUPPORTED_FEEDBACK.get(offered.kind, ()) and fb != "transport-cc":
                    lines.append(f"a=rtcp-fb:{codec.payload_type} {fb}")
        if answer.simulcast:
            lines += [f"a=rid:{rid} recv" for rid in answer.simulcast]
            lines.append(f"a=simulcast:recv {';'.join(answer.simulcast)}")
        if answer.sent is not None:
            sent = answer.sent
            lines += [
                f"a=msid:{sent.stream_label} {sent.track_label}",
                f"a=ssrc:{sent.ssrc} cname:{sent.stream_label}",
                f"a=ssrc:{sent.ssrc} msid:{sent.stream_label} {sent.track_label}",
            ]
        lines += [
            f"a=candidate:1 1 udp 2130706431 {address} {port} typ host",
            "a=end-of-candidates",
        ]
    return "\r\n".join(lines) + "\r\n"
