function (newDoc, oldDoc, userCtx, secObj) {
  // CouchMail's first gate in CouchDB: every write, replication and Fauxton edit included,
  // must have the shape of a CouchMail document. It checks the type, the `_id` prefix and
  // the fields' JSON types; couchmail-model's Document::from_stored stays the precise check
  // (normal forms, lengths, address syntax), so this function never refuses what it accepts.
  // ES5 only: CouchDB 3.x runs it in SpiderMonkey 1.8.5 or QuickJS. The reason of every
  // refusal is `<field>: <what is wrong>`, as couchmail-model's ValidationError prints.

  // A deletion carries no body to check, and must always be possible.
  if (newDoc._deleted === true) {
    return;
  }

  var id = newDoc._id;

  // Local documents (replication checkpoints) are the server's own and never replicated;
  // CouchDB does not validate them, and neither does this function on servers that ask.
  if (id.indexOf('_local/') === 0) {
    return;
  }

  // Design documents hold this very function: only an admin may change them.
  if (id.indexOf('_design/') === 0) {
    if (!userCtx || !userCtx.roles || userCtx.roles.indexOf('_admin') === -1) {
      throw({forbidden: '_id: only a database admin may write design documents'});
    }
    return;
  }

  var KINDS = ['domain', 'domain-alias', 'mailbox', 'alias', 'sieve', 'token', 'listing', 'invitation'];
  var MIN_QUOTA_BYTES = 1048576;
  var MAX_QUOTA_BYTES = 1125899906842624;
  var MAX_ALIAS_TARGETS = 300;
  var MAX_SIEVE_SCRIPT_BYTES = 262144;
  var MAX_U32 = 4294967295;
  var MAX_HOURLY_LIMIT = 1000000;
  var MAX_SPAM_SCORE = 100;
  var MAX_LISTING_NOTE_CHARS = 256;
  var PASSWORD_SCHEMES = ['{ARGON2ID}', '{BLF-CRYPT}', '{SHA512-CRYPT}', '{SHA256-CRYPT}'];
  // Keys are stored in normal form: lower-case ASCII, domains as A-labels.
  var DOMAIN = /^[a-z0-9-]+(\.[a-z0-9-]+)+$/;
  var ADDRESS = /^[a-z0-9!#$%&'*+\/=?^_`{|}~.-]+@[a-z0-9-]+(\.[a-z0-9-]+)+$/;

  function refuse(field, message) {
    throw({forbidden: field + ': ' + message});
  }

  function isInteger(value) {
    return typeof value === 'number' && isFinite(value) && Math.floor(value) === value;
  }

  function present(field) {
    return newDoc[field] !== undefined;
  }

  function requireString(field) {
    if (!present(field)) {
      refuse(field, 'is missing');
    }
    if (typeof newDoc[field] !== 'string') {
      refuse(field, 'must be a string');
    }
    return newDoc[field];
  }

  // An optional field may be absent; `nullable` ones may also be null, as serde reads
  // null into an Option as None.
  function optionalString(field, nullable) {
    var value = newDoc[field];
    if (value === undefined || (nullable && value === null)) {
      return null;
    }
    if (typeof value !== 'string') {
      refuse(field, 'must be a string');
    }
    return value;
  }

  function optionalBoolean(field) {
    var value = newDoc[field];
    if (value !== undefined && typeof value !== 'boolean') {
      refuse(field, 'must be true or false');
    }
  }

  function checkInteger(field, value, min, max) {
    if (!isInteger(value) || value < min || value > max) {
      refuse(field, 'must be a whole number between ' + min + ' and ' + max);
    }
  }

  function optionalInteger(field, min, max) {
    var value = newDoc[field];
    if (value !== undefined && value !== null) {
      checkInteger(field, value, min, max);
    }
  }

  function stringList(field, required) {
    var value = newDoc[field];
    if (value === undefined) {
      if (required) {
        refuse(field, 'is missing');
      }
      return [];
    }
    if (Object.prototype.toString.call(value) !== '[object Array]') {
      refuse(field, 'must be a list of strings');
    }
    for (var item_idx = 0; item_idx < value.length; item_idx++) {
      if (typeof value[item_idx] !== 'string') {
        refuse(field + '[' + item_idx + ']', 'must be a string');
      }
    }
    return value;
  }

  function checkAddress(field, value) {
    if (!ADDRESS.test(value)) {
      refuse(field, '`' + value + '` is not an address in normal form (lower case, domain as A-labels)');
    }
  }

  function checkDomain(field, value) {
    if (!DOMAIN.test(value)) {
      refuse(field, '`' + value + '` is not a domain in normal form (lower case, A-labels)');
    }
  }

  // Greylisting opt-out, spam thresholds and rate limits (issue #5): optional on domains and
  // mailboxes, absent or null meaning "inherit".
  function policySettings() {
    var greylisting = newDoc.greylisting;
    if (greylisting !== undefined && greylisting !== null && typeof greylisting !== 'boolean') {
      refuse('greylisting', 'must be true or false');
    }
    var scores = ['spam_threshold', 'spam_reject'];
    for (var score_idx = 0; score_idx < scores.length; score_idx++) {
      var score = newDoc[scores[score_idx]];
      if (score !== undefined && score !== null &&
          (typeof score !== 'number' || !isFinite(score) || score < 0 || score > MAX_SPAM_SCORE)) {
        refuse(scores[score_idx], 'must be a score between 0 and ' + MAX_SPAM_SCORE);
      }
    }
    optionalInteger('messages_per_hour', 0, MAX_HOURLY_LIMIT);
    optionalInteger('recipients_per_hour', 0, MAX_HOURLY_LIMIT);
  }

  function checkSieveName(field, value) {
    if (value.length === 0 || value.indexOf('/') !== -1) {
      refuse(field, 'a sieve script name is not empty and has no `/`');
    }
  }

  var type = newDoc.type;
  if (type === undefined) {
    refuse('type', 'is missing');
  }
  if (typeof type !== 'string') {
    refuse('type', 'must be a string');
  }
  if (KINDS.indexOf(type) === -1) {
    refuse('type', 'unknown document type `' + type + '`');
  }
  var prefix = type + ':';
  if (id.indexOf(prefix) !== 0) {
    refuse('_id', 'a ' + type + ' document has an _id starting with `' + prefix + '`');
  }
  var key = id.substring(prefix.length);

  if (type === 'domain') {
    checkDomain('_id', key);
    optionalBoolean('active');
    optionalInteger('quota_default', MIN_QUOTA_BYTES, MAX_QUOTA_BYTES);
    optionalInteger('max_mailboxes', 1, MAX_U32);
    policySettings();
  } else if (type === 'domain-alias') {
    checkDomain('_id', key);
    var target = requireString('target');
    if (target.length === 0) {
      refuse('target', 'is empty');
    }
    if (target === key) {
      refuse('target', 'a domain cannot be an alias of itself');
    }
  } else if (type === 'mailbox') {
    checkAddress('_id', key);
    optionalString('name', false);
    var password = optionalString('password', true);
    if (password !== null) {
      var known_scheme = false;
      for (var scheme_idx = 0; scheme_idx < PASSWORD_SCHEMES.length; scheme_idx++) {
        if (password.indexOf(PASSWORD_SCHEMES[scheme_idx]) === 0) {
          known_scheme = true;
        }
      }
      if (!known_scheme) {
        refuse('password', 'unknown hash scheme: give a hash starting with ' + PASSWORD_SCHEMES.join(', '));
      }
    }
    optionalBoolean('active');
    optionalInteger('quota_bytes', MIN_QUOTA_BYTES, MAX_QUOTA_BYTES);
    var roles = stringList('roles', false);
    for (var role_idx = 0; role_idx < roles.length; role_idx++) {
      if (roles[role_idx] !== 'admin' && roles[role_idx].indexOf('domain-admin:') !== 0) {
        refuse('roles[' + role_idx + ']', 'unknown role `' + roles[role_idx] + '`: use `admin` or `domain-admin:<domain>`');
      }
    }
    var sieve_active = optionalString('sieve_active', true);
    if (sieve_active !== null) {
      checkSieveName('sieve_active', sieve_active);
    }
    policySettings();
  } else if (type === 'alias') {
    if (key.charAt(0) === '@') {
      checkDomain('_id', key.substring(1));
    } else {
      checkAddress('_id', key);
    }
    var targets = stringList('targets', true);
    if (targets.length === 0) {
      refuse('targets', 'an alias needs at least one target');
    }
    if (targets.length > MAX_ALIAS_TARGETS) {
      refuse('targets', 'more than ' + MAX_ALIAS_TARGETS + ' targets');
    }
    for (var target_idx = 0; target_idx < targets.length; target_idx++) {
      if (targets[target_idx].indexOf('@') === -1) {
        refuse('targets[' + target_idx + ']', '`' + targets[target_idx] + '` is not an address: no `@`');
      }
    }
    optionalBoolean('active');
  } else if (type === 'sieve') {
    var separator = key.indexOf(':');
    if (separator === -1) {
      refuse('_id', 'must be `sieve:<address>:<name>`');
    }
    checkAddress('_id', key.substring(0, separator));
    checkSieveName('_id', key.substring(separator + 1));
    var script = requireString('script');
    // A UTF-16 length never exceeds the UTF-8 length the model counts.
    if (script.length > MAX_SIEVE_SCRIPT_BYTES) {
      refuse('script', 'is larger than ' + MAX_SIEVE_SCRIPT_BYTES + ' bytes');
    }
    if (script.indexOf('\u0000') !== -1) {
      refuse('script', 'may not contain NUL');
    }
  } else if (type === 'token') {
    if (!/^[A-Za-z0-9]{1,64}$/.test(key)) {
      refuse('_id', 'a token id is 1 to 64 letters and digits');
    }
    if (!/^[0-9a-fA-F]{64}$/.test(requireString('secret_sha256'))) {
      refuse('secret_sha256', 'must be 64 hex digits');
    }
    var principal = requireString('principal');
    if (principal !== 'admin' && !/^mailbox:[^@]+@.+$/.test(principal)) {
      refuse('principal', 'unknown principal `' + principal + '`: use `admin` or `mailbox:<address>`');
    }
    optionalString('label', false);
    if (!present('created')) {
      refuse('created', 'is missing');
    }
    if (!isInteger(newDoc.created) || newDoc.created < 0) {
      refuse('created', 'must be a whole number of seconds since the Unix epoch');
    }
  } else if (type === 'listing') {
    // `listing:<scope>:<action>:<kind>:<value>`, scope `global`, `domain:<d>` or `mailbox:<a>`.
    var listing = /^(global|domain:[^:]+|mailbox:[^:]+):(block|allow):(sender|sender-domain|client):(.+)$/.exec(key);
    if (listing === null) {
      refuse('_id', 'must be `listing:<global|domain:D|mailbox:A>:<block|allow>:<sender|sender-domain|client>:<value>`');
    }
    if (listing[1].indexOf('domain:') === 0) {
      checkDomain('_id', listing[1].substring('domain:'.length));
    } else if (listing[1].indexOf('mailbox:') === 0) {
      checkAddress('_id', listing[1].substring('mailbox:'.length));
    }
    if (listing[3] === 'sender') {
      checkAddress('_id', listing[4]);
    } else if (listing[3] === 'sender-domain') {
      checkDomain('_id', listing[4]);
    } else if (!/^[0-9a-f:.]+(\/[0-9]{1,3})?$/.test(listing[4])) {
      refuse('_id', '`' + listing[4] + '` is not an IP address or network in normal form');
    }
    var note = optionalString('note', true);
    // JavaScript counts UTF-16 units, at most two per character the model counts.
    if (note !== null && note.length > 2 * MAX_LISTING_NOTE_CHARS) {
      refuse('note', 'is longer than ' + MAX_LISTING_NOTE_CHARS + ' characters');
    }
    if (present('created') && newDoc.created !== null && (!isInteger(newDoc.created) || newDoc.created < 0)) {
      refuse('created', 'must be a whole number of seconds since the Unix epoch');
    }
  } else if (type === 'invitation') {
    // A one-time link to create a mailbox (the web UI); only the secret's SHA-256 is stored.
    if (!/^[A-Za-z0-9]{1,64}$/.test(key)) {
      refuse('_id', 'an invitation id is 1 to 64 letters and digits');
    }
    // Body values may be in any form the model normalises (as a domain alias's `target`).
    requireString('domain');
    if (!/^[0-9a-fA-F]{64}$/.test(requireString('secret_sha256'))) {
      refuse('secret_sha256', 'must be 64 hex digits');
    }
    var times = ['created', 'expires'];
    for (var t = 0; t < times.length; t++) {
      if (!present(times[t])) {
        refuse(times[t], 'is missing');
      }
      if (!isInteger(newDoc[times[t]]) || newDoc[times[t]] < 0) {
        refuse(times[t], 'must be a whole number of seconds since the Unix epoch');
      }
    }
    var people = ['created_by', 'used_by'];
    for (var p = 0; p < people.length; p++) {
      if (present(people[p]) && newDoc[people[p]] !== null) {
        requireString(people[p]);
      }
    }
    optionalString('note', true);
  }
}
