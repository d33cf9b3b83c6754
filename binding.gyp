{
  # native/raw_send.c: the raw-socket sender every shard worker thread loads (src/io/raw-send.ts).
  'targets': [
    {
      'target_name': 'raw_send',
      'sources': ['native/raw_send.c'],
      'cflags': ['-Wall', '-Wextra', '-Werror']
    }
  ]
}
