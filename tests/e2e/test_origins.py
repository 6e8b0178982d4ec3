"""The web client talks to its own server and to nobody else.

Two people meet; everything their pages ask for is recorded: every request
(documents, scripts, styles, images, fonts, workers), every WebSocket, the ICE
servers given to each RTCPeerConnection, and every ICE candidate pair the
browser tried. Anything but the server's own origin and media address fails.
"""

from __future__ import annotations

from urllib.parse import urlparse

from playwright.sync_api import Browser, Request

from .participant import Participant, Server

# Keeps every RTCPeerConnection configuration and connection, to inspect ICE later.
RECORD_PEER_CONNECTIONS = """(() => {
  window.__peerConnections = []; window.__iceConfigs = [];
  const Original = RTCPeerConnection;
  window.RTCPeerConnection = function (config, ...rest) {
    window.__iceConfigs.push(JSON.parse(JSON.stringify(config || {})));
    const pc = new Original(config, ...rest);
    window.__peerConnections.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, Original);
})();"""

CANDIDATE_PAIRS = """async () => {
  const pairs = [];
  for (const pc of window.__peerConnections) {
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type !== 'candidate-pair') return;
      const remote = stats.get(s.remoteCandidateId);
      pairs.push({state: s.state, address: remote.address, port: remote.port,
                  protocol: remote.protocol, type: remote.candidateType});
    });
  }
  return pairs;
}"""


def test_the_client_contacts_only_its_own_server(browser: Browser, server: Server) -> None:
    own = urlparse(server.base_url)
    requests: list[str] = []
    sockets: list[str] = []
    people = [Participant(browser, server, name) for name in ("Ines", "Jonah")]
    for person in people:
        person.context.add_init_script(RECORD_PEER_CONNECTIONS)
        person.context.on("request", lambda request: requests.append(request.url))
        person.page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        link = people[0].create_meeting()
        people[0].join()
        people[1].join(link)
        assert people[1].self_id in people[0].wait_for_playing({people[1].self_id})
        people[0].send_chat("hello")
        people[0].page.locator("#toggle-screen").click()
        people[1].wait_for_playing({people[0].self_id}, kind="screen")

        assert len(requests) > 10 and sockets
        for url in requests:
            parsed = urlparse(url)
            assert (parsed.scheme, parsed.hostname, parsed.port) == (
                own.scheme, own.hostname, own.port), f"a request left the server: {url}"
        for url in sockets:
            parsed = urlparse(url)
            assert (parsed.hostname, parsed.port) == (own.hostname, own.port), url
        for person in people:
            configs = person.page.evaluate("() => window.__iceConfigs")
            assert configs and all(c.get("iceServers") == [] for c in configs), configs
            pairs = person.page.evaluate(CANDIDATE_PAIRS)
            assert pairs, "the browser tried no ICE candidate pair"
            for pair in pairs:
                # The only remote address ever tried is the SFU's own candidate.
                assert (pair["address"], pair["port"], pair["protocol"]) == (
                    "127.0.0.1", server.media_port, "udp"), pair
            succeeded = [p for p in pairs if p["state"] == "succeeded"]
            assert succeeded, pairs
    finally:
        for person in people:
            person.close()


def test_pages_load_nothing_from_another_origin_even_if_asked(
    browser: Browser, server: Server
) -> None:
    """The Content-Security-Policy stops a script injected into the page from
    reaching another origin: the browser refuses before any connection."""
    person = Participant(browser, server, "Kai")
    blocked: list[str] = []
    person.page.on("console", lambda message: blocked.append(message.text)
                   if "Content Security Policy" in message.text else None)
    tried: list[Request] = []
    person.page.on("request", lambda request: tried.append(request))
    person.page.goto(server.base_url + "/")
    result = person.page.evaluate("""async () => {
      const outcomes = [];
      try { await fetch('http://127.0.0.2:9/tracker'); outcomes.push('fetched'); }
      catch { outcomes.push('blocked'); }
      const image = new Image(); image.src = 'http://127.0.0.2:9/pixel.png';
      await new Promise((resolve) => { image.onerror = resolve; image.onload = resolve; });
      return outcomes;
    }""")
    assert result == ["blocked"]
    assert blocked, "the browser did not report a CSP refusal"
    assert not [r.url for r in tried if "127.0.0.2" in r.url and r.failure is None]
    person.close()

