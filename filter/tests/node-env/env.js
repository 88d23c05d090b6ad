// The `env` module the wasm-bindgen tests import (`make test-wasm` puts this directory on
// NODE_PATH). The filter's proxy-wasm adapter is compiled into every wasm32 build, so the test
// module imports the proxy-wasm host calls from `env`; the core under test never makes one.
// Each import is a function that throws, so a host call from a core test fails it loudly.
module.exports = new Proxy(
  {},
  {
    get(_target, name) {
      return () => {
        throw new Error(`proxy-wasm host call ${String(name)} made in a core test`);
      };
    },
  },
);
