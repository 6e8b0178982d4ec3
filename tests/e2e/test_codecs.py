"""Video codecs under end-to-end encryption.

SFrame hides all of a frame but its first bytes; H.264's packetiser reads NAL
unit headers throughout the frame, so the client sends VP8 even where the browser
prefers H.264 (as Safari does). The SFU itself forwards H.264 too (see
tests/test_sdp.py and tests/test_sfu.py), for when a NAL-aware frame format lands.
"""

from __future__ import annotations

from playwright.sync_api import Browser

from .participant import Participant, Server

# Puts H.264 (packetization mode 1) first on every video transceiver this page makes.
PREFER_H264 = """(() => {
  const add = RTCPeerConnection.prototype.addTransceiver;
  RTCPeerConnection.prototype.addTransceiver = function (...args) {
    const transceiver = add.apply(this, args);
    if (transceiver.receiver.track.kind === 'video') {
      const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
      const h264 = codecs.filter((c) => c.mimeType === 'video/H264'
        && (c.sdpFmtpLine || '').includes('packetization-mode=1'));
      transceiver.setCodecPreferences([...h264, ...codecs.filter((c) => !h264.includes(c))]);
    }
    return transceiver;
  };
})();"""

INBOUND_VIDEO_CODECS = """async () => {
  const stats = await window.confideClient.peerConnection.getStats();
  const codecs = [];
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) {
      codecs.push(stats.get(s.codecId).mimeType);
    }
  });
  return codecs;
}"""


def test_a_browser_that_prefers_h264_still_sends_encrypted_vp8(
    browser: Browser, server: Server
) -> None:
    safari_like = Participant(browser, server, "Hana")
    safari_like.context.add_init_script(PREFER_H264)
    link = safari_like.create_meeting()
    safari_like.join()
    viewer = Participant(browser, server, "Viktor")
    viewer.join(link)

    assert safari_like.self_id in viewer.wait_for_playing({safari_like.self_id})
    assert viewer.page.evaluate(INBOUND_VIDEO_CODECS) == ["video/VP8"]
    assert viewer.self_id in safari_like.wait_for_playing({viewer.self_id})
    assert safari_like.page.evaluate(INBOUND_VIDEO_CODECS) == ["video/VP8"]
    safari_like.close()
    viewer.close()
