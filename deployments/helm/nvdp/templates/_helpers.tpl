{{- define "nvdp.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "nvdp.configMapName" -}}
{{ .Values.config.name | default (printf "%s-configs" .Release.Name) }}
{{- end }}

{{/* Upstream's flags as env vars, each only when its value is set (false and "" count as set). */}}
{{- define "nvdp.flagEnv" -}}
{{- if not (kindIs "invalid" .Values.migStrategy) }}
- name: MIG_STRATEGY
  value: {{ .Values.migStrategy | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.failOnInitError) }}
- name: FAIL_ON_INIT_ERROR
  value: {{ .Values.failOnInitError | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.deviceListStrategy) }}
- name: DEVICE_LIST_STRATEGY
  value: {{ .Values.deviceListStrategy | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.deviceIDStrategy) }}
- name: DEVICE_ID_STRATEGY
  value: {{ .Values.deviceIDStrategy | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.passDeviceSpecs) }}
- name: PASS_DEVICE_SPECS
  value: {{ .Values.passDeviceSpecs | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.gdrcopyEnabled) }}
- name: GDRCOPY_ENABLED
  value: {{ .Values.gdrcopyEnabled | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.gdsEnabled) }}
- name: GDS_ENABLED
  value: {{ .Values.gdsEnabled | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.mofedEnabled) }}
- name: MOFED_ENABLED
  value: {{ .Values.mofedEnabled | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.deviceDiscoveryStrategy) }}
- name: DEVICE_DISCOVERY_STRATEGY
  value: {{ .Values.deviceDiscoveryStrategy | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.nvidiaDriverRoot) }}
- name: NVIDIA_DRIVER_ROOT
  value: {{ .Values.nvidiaDriverRoot | quote }}
{{- end }}
{{- end }}

{{/* The config-manager container. Args (a dict): root (the chart context), name,
     oneshot ("true": write the config and exit; "false": watch and signal), process. */}}
{{- define "nvdp.configManager" -}}
- name: {{ .name }}
  image: {{ include "nvdp.image" .root | quote }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: ["config-manager"]
  env:
  - name: ONESHOT
    value: {{ .oneshot | quote }}
  - name: NODE_NAME
    valueFrom:
      fieldRef:
        fieldPath: spec.nodeName
  - name: NODE_LABEL
    value: nvidia.com/device-plugin.config
  - name: CONFIG_FILE_SRCDIR
    value: /available-configs
  - name: CONFIG_FILE_DST
    value: /config/config.yaml
  - name: DEFAULT_CONFIG
    value: {{ .root.Values.config.default | quote }}
  - name: FALLBACK_STRATEGIES
    value: {{ join "," .root.Values.config.fallbackStrategies | quote }}
  - name: SEND_SIGNAL
    value: {{ eq .oneshot "false" | quote }}
  - name: SIGNAL
    value: "1"
  - name: PROCESS_TO_SIGNAL
    value: {{ .process }}
  securityContext:
    allowPrivilegeEscalation: false
    capabilities:
      drop: ["ALL"]
  {{- if eq .oneshot "false" }}
  resources:
    {{- toYaml .root.Values.configManager.resources | nindent 4 }}
  {{- end }}
  volumeMounts:
  - name: available-configs
    mountPath: /available-configs
  - name: config
    mountPath: /config
{{- end }}
