// Lets a long computation on the page's thread give the browser a turn (rendering, input,
// the Stop button) without the 4 ms clamp that nested setTimeout calls get.
export function yieldToEventLoop() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}
