{
  # Node-API addons (context-aware, so they load in worker threads): native/raw_send.c, the raw
  # socket every shard worker sends through (src/io/raw-send.ts), native/capture.c, libpcap for
  # the capture thread (src/io/capture.ts), and native/udp.c, the batched UDP socket a shard
  # worker asks the upstream resolver through (src/io/udp-batch.ts). `npm ci` builds them with
  # node-gyp.
  'targets': [
    {
      'target_name': 'raw_send',
      'sources': ['native/raw_send.c'],
      'cflags': ['-Wall', '-Wextra', '-Werror']
    },
    {
      'target_name': 'udp',
      'sources': ['native/udp.c'],
      'cflags': ['-Wall', '-Wextra', '-Werror']
    },
    {
      'target_name': 'capture',
      'sources': ['native/capture.c'],
      'cflags': ['-Wall', '-Wextra', '-Werror'],
      'libraries': ['-lpcap']
    }
  ]
}
